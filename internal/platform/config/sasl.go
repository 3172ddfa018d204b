package config

import "slices"

// SASL is the Kafka client's SASL authentication. internal/platform/kafka
// turns it into a kafka-go mechanism; here it is only checked.
//
// PLAIN sends the password as it is, so without kafka.tls it crosses the
// network in clear; SCRAM never sends it, but without TLS the session is
// still readable and can be hijacked. Use SASL with TLS (SASL_SSL).
type SASL struct {
	Mechanism string `mapstructure:"mechanism" doc:"SASL mechanism: none, plain, scram-sha-256 or scram-sha-512. Without kafka.tls a PLAIN password crosses the network in clear: use SASL over TLS (the broker's SASL_SSL listener)."`
	Username  string `mapstructure:"username" doc:"SASL user name; required unless mechanism is none."`
	Password  string `mapstructure:"password" secret:"true" doc:"SASL password; required unless mechanism is none. Prefer password_file or AGENTWATCH_KAFKA_SASL_PASSWORD to writing it in the file."`
}

// SASLMechanisms are the values kafka.sasl.mechanism accepts.
var SASLMechanisms = []string{"none", "plain", "scram-sha-256", "scram-sha-512"}

func saslDefaults(prefix string) map[string]any {
	return map[string]any{
		prefix + ".mechanism": "none",
		prefix + ".username":  "",
		prefix + ".password":  "",
	}
}

func (s SASL) validate(ps *problems, prefix string) {
	if !slices.Contains(SASLMechanisms, s.Mechanism) {
		ps.add(prefix+".mechanism", "must be none, plain, scram-sha-256 or scram-sha-512, got %q", s.Mechanism)
		return
	}
	if s.Mechanism == "none" {
		return
	}
	if s.Username == "" {
		ps.add(prefix+".username", "must be set when mechanism is %s", s.Mechanism)
	}
	if s.Password == "" {
		ps.add(prefix+".password", "must be set when mechanism is %s (or password_file, or AGENTWATCH_KAFKA_SASL_PASSWORD)", s.Mechanism)
	}
}
