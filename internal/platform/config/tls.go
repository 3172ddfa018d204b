package config

import (
	"os"
	"slices"
)

// TLS is the client side of one TLS connection kind (Kafka, ClickHouse).
// internal/platform/tlsconf turns it into a *tls.Config; here it is only
// checked, so that a bad path is reported with every other mistake at
// start rather than at the first dial.
type TLS struct {
	Enabled    bool   `mapstructure:"enabled" doc:"Connect over TLS."`
	CAFile     string `mapstructure:"ca_file" doc:"PEM bundle of the CAs trusted for the server's certificate; empty: the system's roots."`
	CertFile   string `mapstructure:"cert_file" doc:"PEM client certificate for mutual TLS; set with key_file or not at all."`
	KeyFile    string `mapstructure:"key_file" doc:"PEM private key of cert_file."`
	ServerName string `mapstructure:"server_name" doc:"Name the server's certificate must carry; empty: the host of the address dialled."`
	MinVersion string `mapstructure:"min_version" doc:"Oldest TLS version accepted: 1.2 or 1.3."`
}

// TLSVersions are the values min_version accepts; older versions are
// refused outright because no server worth securing needs them.
var TLSVersions = []string{"1.2", "1.3"}

func tlsDefaults(prefix string) map[string]any {
	return map[string]any{
		prefix + ".enabled":     false,
		prefix + ".ca_file":     "",
		prefix + ".cert_file":   "",
		prefix + ".key_file":    "",
		prefix + ".server_name": "",
		prefix + ".min_version": "1.2",
	}
}

func (t TLS) validate(ps *problems, prefix string) {
	if !slices.Contains(TLSVersions, t.MinVersion) {
		ps.add(prefix+".min_version", "must be 1.2 or 1.3, got %q", t.MinVersion)
	}
	if t.Enabled {
		for _, f := range [][2]string{{".ca_file", t.CAFile}, {".cert_file", t.CertFile}, {".key_file", t.KeyFile}} {
			if f[1] == "" {
				continue
			}
			if _, err := os.Stat(f[1]); err != nil {
				ps.add(prefix+f[0], "cannot read %q: %v", f[1], err)
			}
		}
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		ps.add(prefix+".cert_file", "cert_file and key_file go together: set both or neither")
	}
}
