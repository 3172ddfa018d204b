package kafka_test

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/bus"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/kafka"
	"github.com/agentwatch/agentwatch/internal/platform/tlsconf"
	"github.com/agentwatch/agentwatch/internal/testkit/itest"
)

// TestIntegrationKafkaSASLSSL logs in to the broker's SASL_SSL listener
// with each mechanism (and once with a client certificate on top), and
// sends one record through it: topic creation, a writer and a group
// reader, so every kind of client is proven on the secured path.
func TestIntegrationKafkaSASLSSL(t *testing.T) {
	for _, tc := range []struct {
		mech       string
		clientCert bool
	}{{"plain", false}, {"scram-sha-256", false}, {"scram-sha-512", false}, {"scram-sha-512", true}} {
		name := tc.mech
		if tc.clientCert {
			name += "+client-cert"
		}
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			k := itest.SecureKafka(t, tc.mech)
			if tc.clientCert {
				dir := filepath.Dir(k.TLS.CAFile)
				k.TLS.CertFile, k.TLS.KeyFile = filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
			}
			sec := k.Security(t)
			start := time.Now()
			if err := kafka.Check(ctx, k.Brokers, sec); err != nil {
				t.Fatalf("check: %v", err)
			}
			t.Logf("%s over %s: check took %s", tc.mech, sec.Protocol(), time.Since(start).Round(time.Millisecond))

			topic := "it-sasl-" + strings.ReplaceAll(name, "+", "-") + "-" + itest.RandHex(4)
			if err := kafka.EnsureTopics(ctx, k.Brokers, sec, kafka.TopicSpec{Name: topic, Partitions: 1, ReplicationFactor: 1}); err != nil {
				t.Fatal(err)
			}
			k.DeleteTopicsAfter(t, topic)
			w, err := kafka.NewWriter(kafka.WriterConfig{Brokers: k.Brokers, Security: sec, Topic: topic}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			if err := w.Write(ctx, bus.Message{Key: []byte("k"), Value: []byte("over " + tc.mech)}); err != nil {
				t.Fatalf("write: %v", err)
			}
			r, err := kafka.NewReader(kafka.ReaderConfig{Brokers: k.Brokers, Security: sec, GroupID: topic, Topics: []string{topic}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			m, err := r.Fetch(ctx)
			if err != nil {
				t.Fatalf("fetch: %v", err)
			}
			if string(m.Value) != "over "+tc.mech {
				t.Fatalf("read %q", m.Value)
			}
			if err := r.Commit(ctx, m); err != nil {
				t.Fatalf("commit: %v", err)
			}
			var got []string
			if err := kafka.ReadSince(ctx, k.Brokers, sec, topic, time.Unix(0, 0), func(m bus.Message) error {
				got = append(got, string(m.Value))
				return nil
			}); err != nil || len(got) != 1 {
				t.Fatalf("ReadSince: %v, %q", err, got)
			}
		})
	}
}

// TestIntegrationKafkaSecurityMistakes makes each mistake an operator
// makes against the real broker and wants Check to say which it was, at
// once rather than after kafka-go's endless retries.
func TestIntegrationKafkaSecurityMistakes(t *testing.T) {
	plain := itest.PlainKafka(t)
	good := itest.SecureKafka(t, "scram-sha-512")
	for _, tc := range []struct {
		name   string
		k      itest.Kafka
		want   error
		wantIn string
	}{
		{"wrong password", with(good, func(k *itest.Kafka) { k.SASL.Password += "-wrong" }), kafka.ErrAuthFailed, "SASL authentication failed"},
		{"unknown user", with(good, func(k *itest.Kafka) { k.SASL.Username = "nobody-" + itest.RandHex(3) }), kafka.ErrAuthFailed, "SASL authentication failed"},
		{"untrusted certificate", with(good, func(k *itest.Kafka) { k.TLS.CAFile = filepath.Join(filepath.Dir(k.TLS.CAFile), "other-ca.crt") }), tlsconf.ErrUntrusted, "not trusted"},
		{"plaintext client on the TLS port", with(good, func(k *itest.Kafka) { k.TLS = config.TLS{MinVersion: "1.2"}; k.SASL = config.SASL{Mechanism: "none"} }), nil, "is this the TLS/SASL listener?"},
		{"plaintext SASL client on the TLS port", with(good, func(k *itest.Kafka) { k.TLS = config.TLS{MinVersion: "1.2"} }), nil, "is this the TLS/SASL listener?"},
		{"TLS client on the plaintext port", with(good, func(k *itest.Kafka) { k.Brokers = plain.Brokers }), tlsconf.ErrNotTLS, "plaintext listener"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sec := tc.k.Security(t)
			start := time.Now()
			err := kafka.Check(t.Context(), tc.k.Brokers, sec)
			took := time.Since(start)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.wantIn) {
				t.Fatalf("Check = %v; want %v saying %q", err, tc.want, tc.wantIn)
			}
			if strings.Contains(err.Error(), good.SASL.Password) {
				t.Fatalf("the error shows the password: %v", err)
			}
			t.Logf("after %s: %v", took.Round(time.Millisecond), err)
		})
	}
}

func with(k itest.Kafka, f func(*itest.Kafka)) itest.Kafka {
	k.Brokers = append([]string(nil), k.Brokers...)
	f(&k)
	return k
}

// TestIntegrationServiceExitsOnKafkaMistake starts the ingest service with
// a wrong SASL password: it must exit non-zero, saying so, instead of
// running with readers that retry for ever.
func TestIntegrationServiceExitsOnKafkaMistake(t *testing.T) {
	k := itest.SecureKafka(t, "scram-sha-512")
	k.SASL.Password = "not-the-" + itest.RandHex(4)
	ch := itest.ClickHouseAddr(t)
	bin := itest.BuildBinary(t, "ingest")
	env := []string{"AGENTWATCH_CLICKHOUSE_ADDR=" + strings.Join(ch, ","), "AGENTWATCH_HTTP_ADDR=", "AGENTWATCH_LOG_FORMAT=text"}
	for key, v := range k.Settings() {
		env = append(env, config.EnvPrefix+"_"+strings.ToUpper(strings.ReplaceAll(key, ".", "_"))+"="+v)
	}
	p := itest.Start(t, bin, env, "run")
	select {
	case <-p.Done:
	case <-time.After(time.Minute):
		t.Fatalf("ingest still runs a minute after start with a wrong password:\n%s", p.Tail(20))
	}
	var ee *exec.ExitError
	if !errors.As(p.Err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("ingest exited with %v; want a non-zero code", p.Err)
	}
	out := strings.Join(p.Output(), "\n")
	if !strings.Contains(out, "SASL authentication failed") {
		t.Fatalf("ingest's output does not say the login failed:\n%s", out)
	}
	if strings.Contains(out, k.SASL.Password) {
		t.Fatalf("ingest printed the password:\n%s", out)
	}
}
