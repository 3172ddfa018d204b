package kstate

import (
	"errors"
	"io"
	"net"

	kafkago "github.com/segmentio/kafka-go"
)

// retryable says whether a write failed with what a leader change or a
// dropped connection causes: written again, it may succeed.
func retryable(err error) bool {
	var ke kafkago.Error
	if errors.As(err, &ke) {
		return ke.Temporary()
	}
	// A dropped or refused connection: the next try dials again.
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
}
