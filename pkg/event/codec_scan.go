package event

import "github.com/agentwatch/agentwatch/pkg/internal/jsonscan"

// Decoder reads canonical events with the hand-written JSON scanner in
// pkg/internal/jsonscan, shared with pkg/gateway (whose fuzz test checks it
// against fastjson); these names keep the decoder's code short.
type (
	jval = jsonscan.Val
	jkv  = jsonscan.KV
)

const (
	jString = jsonscan.String
	jNumber = jsonscan.Number
	jObject = jsonscan.Object
	jArray  = jsonscan.Array
	jTrue   = jsonscan.True
	jFalse  = jsonscan.False
)

func skipWS(b []byte, i int) int    { return jsonscan.SkipWS(b, i) }
func unescape(dst, s []byte) []byte { return jsonscan.Unescape(dst, s) }
func scanValue(b []byte, i, depth int) (int, byte, bool) {
	return jsonscan.ScanValue(b, i, depth)
}
func scanObject(b []byte, i, depth int, kvs []jkv) ([]jkv, int, bool) {
	return jsonscan.ScanObject(b, i, depth, kvs)
}
