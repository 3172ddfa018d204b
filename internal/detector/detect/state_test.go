package detect

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/agentwatch/agentwatch/internal/tools/sim"
	"github.com/agentwatch/agentwatch/pkg/baseline"
)

// TestAgentStateRoundTrip: every agent's state after two simulated days
// serialises and restores to an equal state that serialises to the same
// bytes, and every truncation of it is rejected.
func TestAgentStateRoundTrip(t *testing.T) {
	rs, s := simRecords(t, twoDays(41))
	set := testSettings()
	set.Risk = DefaultRiskSettings()
	p := NewProcessor(set, simCatalog(t, s), nil)
	run(p, rs)
	n, withRisk := 0, 0
	var scratch []byte
	for _, pt := range p.parts {
		for id, a := range pt.agents {
			if n%2 == 0 { // as if a false-positive verdict had been applied
				a.verdictAt, a.verdictID = 1_800_000_000_000+int64(n), "verdict-"+id
			}
			if n%3 == 0 && a.risk == nil { // as if it had had anomalies
				a.risk = &riskState{}
				for i := range n%(riskKeep+3) + 1 {
					a.risk.add(&set.Risk, 1_800_000_000_000+int64(i)*600_000, baseline.Severity(1+i%4), "kind-"+id)
				}
			}
			if a.risk != nil {
				withRisk++
			}
			b := a.marshal(nil)
			// The model behind its length, and the same bytes when encoded
			// after others into a reused buffer, as a snapshot does.
			mb := a.model.AppendBinary(nil)
			if want := append(binary.AppendUvarint([]byte{b[0]}, uint64(len(mb))), mb...); !bytes.HasPrefix(b, want) {
				t.Fatalf("agent %s: the model is not encoded behind its length", id)
			}
			scratch = a.marshal(append(scratch[:0], "before"...))
			if !bytes.Equal(scratch[len("before"):], b) {
				t.Fatalf("agent %s: encoded into a used buffer, the state differs", id)
			}
			back := &agentState{id: id}
			if err := back.unmarshal(b); err != nil {
				t.Fatalf("agent %s: %v", id, err)
			}
			if again := back.marshal(nil); !bytes.Equal(again, b) {
				t.Fatalf("agent %s: re-serialised state differs", id)
			}
			a.accs, a.dirty, back.dirty = nil, false, false
			if !reflect.DeepEqual(back.seen, a.seen) || back.ruleAt != a.ruleAt || back.hourCalls != a.hourCalls || back.lastActiveMs != a.lastActiveMs ||
				back.hourLoad != a.hourLoad || back.verdictAt != a.verdictAt || back.verdictID != a.verdictID ||
				!reflect.DeepEqual(back.risk, a.risk) {
				t.Fatalf("agent %s: restored state differs", id)
			}
			// A version-3 state (written before the risk) still loads,
			// with no risk: the agent's risk starts at zero.
			v3 := &agentState{id: id}
			if err := v3.unmarshal(a.marshalAs(nil, 3)); err != nil {
				t.Fatalf("agent %s: version 3 state: %v", id, err)
			}
			if v3.risk != nil || v3.verdictAt != a.verdictAt || v3.verdictID != a.verdictID || v3.ruleAt != a.ruleAt ||
				!bytes.Equal(v3.model.AppendBinary(nil), a.model.AppendBinary(nil)) {
				t.Fatalf("agent %s: version 3 state restores differently", id)
			}
			// A version-2 state (written before false-positive feedback)
			// still loads, with no verdict applied.
			v2 := &agentState{id: id}
			if err := v2.unmarshal(a.marshalAs(nil, 2)); err != nil {
				t.Fatalf("agent %s: version 2 state: %v", id, err)
			}
			if v2.ruleAt != a.ruleAt || v2.hourLoad != a.hourLoad || v2.verdictAt != 0 || v2.verdictID != "" ||
				!bytes.Equal(v2.model.AppendBinary(nil), a.model.AppendBinary(nil)) {
				t.Fatalf("agent %s: version 2 state restores differently", id)
			}
			// A version-1 state (written before new_source_ip existed)
			// still loads, with that rule's time zero.
			v1 := &agentState{id: id}
			if err := v1.unmarshal(a.marshalAs(nil, 1)); err != nil {
				t.Fatalf("agent %s: version 1 state: %v", id, err)
			}
			want := a.ruleAt
			want[ruleNewIP] = 0
			if v1.ruleAt != want || v1.lastActiveMs != a.lastActiveMs || !reflect.DeepEqual(v1.seen, a.seen) {
				t.Fatalf("agent %s: version 1 state restores differently", id)
			}
			for i := range b {
				if err := new(agentState).unmarshal(b[:i]); err == nil {
					t.Fatalf("agent %s: truncated state (%d of %d bytes) accepted", id, i, len(b))
				}
			}
			n++
		}
		var back partition
		pt.globalAt, pt.globalFeat = 1234, "server_5xx" // as if a global event were under way
		src := pt.marshalSources(nil)
		if err := back.unmarshalSources(src); err != nil || !reflect.DeepEqual(back.sources, pt.sources) || back.minSource != pt.minSource ||
			back.globalAt != pt.globalAt || back.globalFeat != pt.globalFeat {
			t.Fatalf("partition %d watermark sources do not round-trip: %v", pt.id, err)
		}
		if pt.fleet[0].s.Points() == 0 || !reflect.DeepEqual(back.fleet, pt.fleet) || !bytes.Equal(back.marshalSources(nil), src) {
			t.Fatalf("partition %d fleet gauge (%d points) does not round-trip", pt.id, pt.fleet[0].s.Points())
		}
		// A version-2 state (written before the fleet gauge) still loads,
		// with the gauge starting afresh.
		var v2 partition
		if err := v2.unmarshalSources(pt.marshalSourcesAs(nil, 2)); err != nil || !reflect.DeepEqual(v2.sources, pt.sources) ||
			v2.globalAt != pt.globalAt || v2.fleet[0].s.Points() != 0 || v2.fleet[1].s.Points() != 0 {
			t.Fatalf("partition %d: version 2 state restores differently: %v", pt.id, err)
		}
		for i := 0; i < len(src); i += 1 + i/512 { // every cut in the sources, some in the fleet's
			if err := new(partition).unmarshalSources(src[:i]); err == nil {
				t.Fatalf("partition %d: truncated state (%d of %d bytes) accepted", pt.id, i, len(src))
			}
		}
	}
	if n < 24 || withRisk < n/3 {
		t.Fatalf("only %d agents checked, %d with a risk", n, withRisk)
	}
}

// FuzzAgentStateUnmarshal: no input panics, and what decodes re-encodes
// to something that decodes to the same state.
func FuzzAgentStateUnmarshal(f *testing.F) {
	rng := rand.New(rand.NewPCG(1, 1))
	s, err := sim.New(twoDays(42))
	if err != nil {
		f.Fatal(err)
	}
	p := NewProcessor(testSettings(), simCatalog(f, s), nil)
	for i := 0; i < 5000; i++ {
		l, ok := s.Next()
		if !ok {
			break
		}
		if l.Good {
			ev := l.Event
			p.Add(0, int64(i), &ev)
		}
	}
	p.FlushAll()
	for _, a := range p.parts[0].agents {
		f.Add(a.marshal(nil))
		if rng.IntN(3) == 0 {
			// The same agent with a risk and two remembered anomalies.
			rs := DefaultRiskSettings()
			a.risk = &riskState{}
			a.risk.add(&rs, 1_800_000_000_000, baseline.Medium, "behaviour")
			a.risk.add(&rs, 1_800_000_600_000, baseline.High, "off_hours")
			f.Add(a.marshal(nil))
			break
		}
	}
	f.Add([]byte{1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var a agentState
		if err := a.unmarshal(b); err != nil {
			return
		}
		var back agentState
		if err := back.unmarshal(a.marshal(nil)); err != nil {
			t.Fatalf("re-encoded state does not decode: %v", err)
		}
		if !bytes.Equal(back.marshal(nil), a.marshal(nil)) {
			t.Fatal("re-encoded state differs")
		}
	})
}
