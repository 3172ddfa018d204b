package outbox_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/outbox"
	"github.com/prometheus/client_golang/prometheus"
)

// postError stands in for *slackui.PostError.
type postError struct {
	retry      bool
	retryAfter time.Duration
}

func (e *postError) Error() string { return "chat.postMessage failed" }

// Example shows the responder's use: per anomaly, skip it if handled,
// enqueue its actions under deterministic keys, mark it handled, and only
// then commit the Kafka offset. A Worker runs the actions; the Slack
// handler turns the poster's typed error into the outbox's vocabulary.
func Example() {
	dir, _ := os.MkdirTemp("", "outbox-example")
	defer os.RemoveAll(dir)
	store, err := outbox.OpenFile(filepath.Join(dir, "outbox.jsonl"), outbox.FileOptions{})
	if err != nil {
		panic(err)
	}
	defer store.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()

	if err := handleAnomaly(ctx, store, "a-1", "d1"); err != nil {
		panic(err)
	}
	// ...commit the offset here.

	// findPosted stands in for a Slack lookup by the message's metadata.
	findPosted := func(outbox.Entry) (ts []byte, found bool) { return nil, false }
	slackPost := func(ctx context.Context, e outbox.Entry) ([]byte, error) {
		if ts, found := findPosted(e); e.Recovered && found {
			return ts, nil // posted before the crash: do not post again
		}
		var err error // = poster.PostAlert(...)
		var pe *postError
		switch {
		case errors.As(err, &pe) && pe.retryAfter > 0:
			return nil, outbox.RetryAfter(pe.retryAfter, err)
		case errors.As(err, &pe) && !pe.retry:
			return nil, outbox.Permanent(err)
		case err != nil:
			return nil, err
		}
		return []byte("1700000000.000100"), nil
	}
	w := &outbox.Worker{
		Store: store,
		Kinds: map[string]outbox.Kind{
			"slack.post": {Handler: slackPost},
			"revoke":     {Handler: func(context.Context, outbox.Entry) ([]byte, error) { return nil, nil }, Concurrency: 4},
		},
		Log:     slog.New(slog.DiscardHandler),
		Metrics: outbox.NewMetrics(prometheus.NewRegistry()),
	}
	_ = w.Run(ctx) // a pipeline.Stage: run it with the others
}

// handleAnomaly is the consumer's part for one anomaly and its decision.
func handleAnomaly(ctx context.Context, store *outbox.FileStore, anomalyID, decisionID string) error {
	handled, err := store.Handled(ctx, anomalyID)
	if err != nil || handled {
		return err // a redelivery or replay: nothing to do
	}
	if _, _, err := store.Enqueue(ctx, decisionID+"-0", "slack.post", []byte(`{"text":"alert"}`),
		outbox.WithOrderKey("slack:incident-1")); err != nil {
		return err
	}
	if _, _, err := store.Enqueue(ctx, decisionID+"-1", "revoke", []byte(`{"credential":"cred-1"}`)); err != nil {
		return err
	}
	_, err = store.MarkHandled(ctx, anomalyID)
	return err
}
