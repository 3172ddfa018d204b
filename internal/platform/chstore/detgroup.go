package chstore

import (
	"context"
	"fmt"

	"github.com/agentwatch/agentwatch/internal/detector/detstate"
)

// Checkpoints returns the newest checkpoint of every (group, topic,
// partition) in detector_checkpoints: the detector reads them at start to
// find other consumer groups writing the same state (detect.CheckGroup).
// Safe for concurrent use.
func (s *Store) Checkpoints(ctx context.Context) ([]detstate.Checkpoint, error) {
	rows, err := s.conn.Query(ctx, "SELECT `group`, topic, `partition`, closed_through_ms, watermark_ms, resume_offset, last_offset, updated_ms"+
		" FROM detector_checkpoints FINAL ORDER BY `group`, topic, `partition`")
	if err != nil {
		return nil, fmt.Errorf("list detector checkpoints in %s: %w", s.db, err)
	}
	defer rows.Close()
	var out []detstate.Checkpoint
	for rows.Next() {
		var c detstate.Checkpoint
		if err := rows.Scan(&c.Group, &c.Topic, &c.Partition, &c.ClosedThroughMs, &c.WatermarkMs, &c.ResumeOffset, &c.LastOffset, &c.UpdatedMs); err != nil {
			return nil, fmt.Errorf("list detector checkpoints in %s: %w", s.db, err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list detector checkpoints in %s: %w", s.db, err)
	}
	return out, nil
}
