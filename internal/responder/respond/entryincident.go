package respond

import (
	"context"
	"encoding/json"
	"fmt"
)

// EntryIncident returns the incident the outbox entry key acts for, or ""
// when the entry is unknown or acts for no incident (a channel's summary).
// A posted message's Marker is the key of the entry that posted it, so the
// demo and responder preview attribute each message to its incident by it.
func (e *Engine) EntryIncident(ctx context.Context, key string) (string, error) {
	en, ok, err := e.o.Outbox.Get(ctx, key)
	if err != nil {
		return "", fmt.Errorf("look up outbox entry %s: %w", key, err)
	}
	if !ok {
		return "", nil
	}
	var j struct {
		Incident string `json:"incident"`
	}
	if err := json.Unmarshal(en.Payload, &j); err != nil {
		return "", fmt.Errorf("decode outbox entry %s: %w", key, err)
	}
	return j.Incident, nil
}
