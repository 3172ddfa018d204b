package respctl

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestOutboxRepairGoesThroughTheAPI: in the distributed mode requeue and
// dismiss call the running responder's API with the operator's token, a
// request id, and print what it answered.
func TestOutboxRepairGoesThroughTheAPI(t *testing.T) {
	var mu sync.Mutex
	var got []map[string]string
	var paths, auths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in map[string]string
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &in)
		mu.Lock()
		got, paths, auths = append(got, in), append(paths, r.URL.Path), append(auths, r.Header.Get("Authorization"))
		mu.Unlock()
		switch in["key"] {
		case "elsewhere":
			w.WriteHeader(http.StatusAccepted)
			_, _ = w.Write([]byte(`{"key":"elsewhere","result":"queued"}`))
		case "unknown":
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error":"no entry \"unknown\" in any partition"}`))
		case "again":
			_, _ = w.Write([]byte(`{"key":"again","state":"done","duplicate":true}`))
		default:
			state := "pending"
			if strings.HasSuffix(r.URL.Path, "/dismiss") {
				state = "failed"
			}
			_, _ = w.Write([]byte(`{"key":"` + in["key"] + `","state":"` + state + `"}`))
		}
	}))
	defer srv.Close()
	t.Setenv("RESPONDER_API_TOKEN", "tok-0123456789")
	cfg := embeddedConfig(t)
	cfg.Kafka.Brokers = []string{"127.0.0.1:1"} // distributed; the API is all it uses
	ctx := t.Context()
	for _, tc := range []struct {
		name    string
		run     func(w io.Writer) error
		path    string
		want    string
		wantErr string
	}{
		{name: "requeue", run: func(w io.Writer) error {
			return OutboxRequeue(ctx, cfg, OutboxRequeueOptions{Key: "k1", API: srv.URL, RequestID: "r-1"}, w)
		}, path: "/v1/outbox/requeue", want: "k1 is pending\n"},
		{name: "dismiss", run: func(w io.Writer) error {
			return OutboxDismiss(ctx, cfg, OutboxDismissOptions{Key: "k2", Reason: "agent gone", API: srv.URL}, w)
		}, path: "/v1/outbox/dismiss", want: "k2 is failed\n"},
		{name: "queued", run: func(w io.Writer) error {
			return OutboxRequeue(ctx, cfg, OutboxRequeueOptions{Key: "elsewhere", API: srv.URL}, w)
		}, path: "/v1/outbox/requeue", want: "has not answered yet"},
		{name: "duplicate", run: func(w io.Writer) error {
			return OutboxRequeue(ctx, cfg, OutboxRequeueOptions{Key: "again", API: srv.URL, RequestID: "r-1"}, w)
		}, path: "/v1/outbox/requeue", want: "had acted before"},
		{name: "unknown key", run: func(w io.Writer) error {
			return OutboxRequeue(ctx, cfg, OutboxRequeueOptions{Key: "unknown", API: srv.URL}, w)
		}, path: "/v1/outbox/requeue", wantErr: "404"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := tc.run(&out)
			switch {
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v; want one with %q", err, tc.wantErr)
			case tc.wantErr == "" && err != nil:
				t.Fatal(err)
			case !strings.Contains(out.String(), tc.want):
				t.Fatalf("output %q; want %q", out.String(), tc.want)
			}
			mu.Lock()
			defer mu.Unlock()
			last := got[len(got)-1]
			if paths[len(paths)-1] != tc.path || auths[len(auths)-1] != "Bearer tok-0123456789" || last["request_id"] == "" {
				t.Fatalf("request %s %v (auth %q); want %s with the token and a request id", paths[len(paths)-1], last, auths[len(auths)-1], tc.path)
			}
		})
	}
	if got[0]["request_id"] != "r-1" || got[1]["reason"] != "agent gone" || got[1]["request_id"] == got[2]["request_id"] {
		t.Errorf("bodies %v: want the given request id kept, the reason sent, a new id per run", got)
	}

	t.Setenv("RESPONDER_API_TOKEN", "")
	err := OutboxRequeue(ctx, cfg, OutboxRequeueOptions{Key: "k1", API: srv.URL}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "can_repair_outbox") {
		t.Errorf("without a token: %v; want a pointer to RESPONDER_API_TOKEN with can_repair_outbox", err)
	}
}
