package detect

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/baseline"
)

// agent state serialisation: version, model, seen-set, rule times, last
// activity, hour load (version 2 on), last applied verdict (version 3 on),
// risk (version 4 on).
const agentStateVersion = 4

func (a *agentState) marshal(dst []byte) []byte {
	return a.marshalAs(dst, agentStateVersion)
}

// marshalAs writes version 1 (six rule times), 2 (hour load), 3 (last
// verdict) or 4 (risk); only tests write the older ones.
func (a *agentState) marshalAs(dst []byte, version byte) []byte {
	rules := numRules
	if version == 1 {
		rules = rulesV1
	}
	dst = append(dst, version)
	// The model's length is fixed: it goes straight into dst behind it, so
	// a reused dst makes no garbage per agent.
	dst = binary.AppendUvarint(dst, uint64(baseline.EncodedSize))
	dst = a.model.AppendBinary(dst)
	dst = a.seen.AppendBinary(dst)
	for _, t := range a.ruleAt[:rules] {
		dst = binary.AppendVarint(dst, t)
	}
	dst = binary.AppendVarint(dst, a.lastActiveMs)
	dst = binary.AppendVarint(dst, a.hourStart)
	dst = binary.AppendUvarint(dst, uint64(a.hourActive))
	dst = binary.AppendUvarint(dst, uint64(a.hourCalls))
	if version >= 2 {
		for _, x := range a.hourLoad {
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(x))
		}
	}
	if version >= 3 {
		dst = binary.AppendVarint(dst, a.verdictAt)
		dst = binary.AppendUvarint(dst, uint64(len(a.verdictID)))
		dst = append(dst, a.verdictID...)
	}
	if version >= 4 {
		dst = a.risk.appendBinary(dst)
	}
	return dst
}

// appendBinary writes the risk: a 0 byte for none (nil), else 1, the
// value, its time, the above-level time, the raised flag and the
// remembered anomalies (time, severity, kind).
func (r *riskState) appendBinary(dst []byte) []byte {
	if r == nil {
		return append(dst, 0)
	}
	dst = append(dst, 1)
	dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(r.value))
	dst = binary.AppendVarint(dst, r.atMs)
	dst = binary.AppendVarint(dst, r.sinceMs)
	raised := byte(0)
	if r.raised {
		raised = 1
	}
	dst = append(dst, raised)
	dst = binary.AppendUvarint(dst, uint64(len(r.hits)))
	for _, h := range r.hits {
		dst = binary.AppendVarint(dst, h.atMs)
		dst = append(dst, byte(h.sev))
		dst = binary.AppendUvarint(dst, uint64(len(h.kind)))
		dst = append(dst, h.kind...)
	}
	return dst
}

var knownKinds = anomaly.Kinds()

// internKind returns the anomaly.Kinds constant spelled b, so that the
// restored risks of many agents do not each hold copies of the same few
// names; any other spelling is copied.
func internKind(b []byte) string {
	for _, k := range knownKinds {
		if string(b) == k {
			return k
		}
	}
	return string(b)
}

// readRisk reads what appendBinary wrote, and what is left of b.
func readRisk(b []byte) (*riskState, []byte, error) {
	bad := errors.New("agent state: truncated or corrupt risk")
	if len(b) < 1 || b[0] > 1 {
		return nil, nil, bad
	}
	if b[0] == 0 {
		return nil, b[1:], nil
	}
	b = b[1:]
	if len(b) < 8 {
		return nil, nil, bad
	}
	r := &riskState{value: math.Float64frombits(binary.LittleEndian.Uint64(b))}
	b = b[8:]
	var ok1, ok2 bool
	varint := func() (int64, bool) {
		v, k := binary.Varint(b)
		if k <= 0 {
			return 0, false
		}
		b = b[k:]
		return v, true
	}
	r.atMs, ok1 = varint()
	r.sinceMs, ok2 = varint()
	// A risk is a finite sum of non-negative weights.
	if !ok1 || !ok2 || len(b) < 1 || b[0] > 1 || !(r.value >= 0) || math.IsInf(r.value, 0) {
		return nil, nil, bad
	}
	r.raised = b[0] == 1
	b = b[1:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > riskKeep {
		return nil, nil, bad
	}
	b = b[k:]
	if n > 0 {
		r.hits = make([]riskHit, n)
	}
	for i := range r.hits {
		at, ok := varint()
		if !ok || len(b) < 1 || b[0] > byte(baseline.Critical) {
			return nil, nil, bad
		}
		sev := baseline.Severity(b[0])
		b = b[1:]
		l, k := binary.Uvarint(b)
		if k <= 0 || l > maxRiskKind || uint64(len(b)-k) < l {
			return nil, nil, bad
		}
		r.hits[i] = riskHit{atMs: at, sev: sev, kind: internKind(b[k : k+int(l)])}
		b = b[k+int(l):]
	}
	return r, b, nil
}

func (a *agentState) unmarshal(b []byte) error {
	if len(b) < 1 || b[0] < 1 || b[0] > agentStateVersion {
		return errors.New("agent state: unknown version")
	}
	version := b[0]
	rules := numRules
	if version == 1 {
		rules = rulesV1
	}
	a.ruleAt = [numRules]int64{}
	b = b[1:]
	n, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < n {
		return errors.New("agent state: truncated model")
	}
	if err := a.model.UnmarshalBinary(b[k : k+int(n)]); err != nil {
		return fmt.Errorf("agent state: %w", err)
	}
	b = b[k+int(n):]
	used, err := a.seen.UnmarshalBinary(b)
	if err != nil {
		return fmt.Errorf("agent state: %w", err)
	}
	b = b[used:]
	for i := range rules {
		t, k := binary.Varint(b)
		if k <= 0 {
			return errors.New("agent state: truncated rule times")
		}
		a.ruleAt[i], b = t, b[k:]
	}
	var vs [2]int64
	for i := range vs {
		t, k := binary.Varint(b)
		if k <= 0 {
			return errors.New("agent state: truncated")
		}
		vs[i], b = t, b[k:]
	}
	a.lastActiveMs, a.hourStart = vs[0], vs[1]
	h, k := binary.Uvarint(b)
	if k <= 0 || h > math.MaxUint16 {
		return errors.New("agent state: truncated")
	}
	a.hourActive = uint16(h)
	b = b[k:]
	c, k := binary.Uvarint(b)
	if k <= 0 || c > math.MaxUint32 {
		return errors.New("agent state: truncated")
	}
	a.hourCalls = uint32(c)
	b = b[k:]
	a.hourLoad = [4]float64{}
	if version >= 2 {
		if len(b) < 8*len(a.hourLoad) {
			return errors.New("agent state: truncated hour load")
		}
		for i := range a.hourLoad {
			a.hourLoad[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
		}
		b = b[8*len(a.hourLoad):]
	}
	a.verdictAt, a.verdictID = 0, ""
	if version >= 3 {
		at, k := binary.Varint(b)
		if k <= 0 {
			return errors.New("agent state: truncated verdict time")
		}
		b = b[k:]
		l, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < l {
			return errors.New("agent state: truncated verdict id")
		}
		a.verdictAt, a.verdictID = at, string(b[k:k+int(l)])
		b = b[k+int(l):]
	}
	a.risk = nil
	if version >= 4 {
		r, _, err := readRisk(b)
		if err != nil {
			return err
		}
		a.risk = r
	}
	return nil
}

// marshalSources serialises the partition's watermark sources, so that a
// restored partition holds its watermark back exactly as before, its
// global event and (version 3 on) its fleet gauge.
func (pt *partition) marshalSources(dst []byte) []byte {
	return pt.marshalSourcesAs(dst, partitionStateVersion)
}

// partitionStateVersion is the version marshalSources writes: 1 lacked
// the global event, 2 the fleet gauge.
const partitionStateVersion = 3

// marshalSourcesAs writes version 2 or 3; only tests write 2.
func (pt *partition) marshalSourcesAs(dst []byte, version byte) []byte {
	keys := make([]source, 0, len(pt.sources))
	for k := range pt.sources {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y source) int {
		return cmp.Or(cmp.Compare(x.topic, y.topic), cmp.Compare(x.partition, y.partition))
	})
	dst = append(dst, version)
	dst = binary.AppendVarint(dst, pt.globalAt)
	dst = binary.AppendUvarint(dst, uint64(len(pt.globalFeat)))
	dst = append(dst, pt.globalFeat...)
	dst = binary.AppendVarint(dst, pt.maxIngest)
	dst = binary.AppendVarint(dst, int64(pt.sinceScan))
	dst = binary.AppendUvarint(dst, uint64(len(pt.minSource.topic)))
	dst = append(dst, pt.minSource.topic...)
	dst = binary.AppendVarint(dst, int64(pt.minSource.partition))
	dst = binary.AppendUvarint(dst, uint64(len(keys)))
	for _, k := range keys {
		c := pt.sources[k]
		dst = binary.AppendUvarint(dst, uint64(len(k.topic)))
		dst = append(dst, k.topic...)
		dst = binary.AppendVarint(dst, int64(k.partition))
		dst = binary.AppendVarint(dst, c.maxEvent)
		dst = binary.AppendVarint(dst, c.lastIngest)
		dst = binary.AppendVarint(dst, c.pending)
	}
	if version < 3 {
		return dst
	}
	return pt.appendFleet(dst)
}

// The "read a few fields, then check them all" steps below look alike on
// purpose: each mirrors a group of Appends in marshalSources, in order.
func (pt *partition) unmarshalSources(b []byte) error {
	bad := errors.New("truncated or corrupt")
	// Version 1 lacked globalAt, version 2 the fleet gauge (it starts
	// afresh).
	if len(b) < 1 || b[0] < 1 || b[0] > partitionStateVersion {
		return errors.New("unknown version")
	}
	version := b[0]
	b = b[1:]
	varint := func() (int64, bool) {
		v, k := binary.Varint(b)
		if k <= 0 {
			return 0, false
		}
		b = b[k:]
		return v, true
	}
	str := func() (string, bool) {
		l, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < l {
			return "", false
		}
		s := string(b[k : k+int(l)])
		b = b[k+int(l):]
		return s, true
	}
	var globalAt int64
	var globalFeat string
	if version >= 2 {
		g, ok := varint()
		f, okF := str()
		if !ok || !okF {
			return bad
		}
		globalAt, globalFeat = g, f
	}
	maxIngest, ok := varint()
	sinceScan, okS := varint()
	minTopic, okT := str()
	minPart, okP := varint()
	if !ok || !okS || !okT || !okP {
		return bad
	}
	n, k := binary.Uvarint(b)
	if k <= 0 || n > 1<<20 {
		return bad
	}
	b = b[k:]
	srcs := make(map[source]*sourceClock, n)
	for range n {
		topic, okT := str()
		if !okT {
			return bad
		}
		part, ok1 := varint()
		maxEvent, ok2 := varint()
		lastIngest, ok3 := varint()
		pending, ok4 := varint()
		if !ok1 || !ok2 || !ok3 || !ok4 {
			return bad
		}
		srcs[source{topic, int32(part)}] = &sourceClock{maxEvent: maxEvent, lastIngest: lastIngest, pending: pending}
	}
	var fleet [numFleet]fleetGauge
	if version >= 3 {
		var err error
		if fleet, _, err = readFleet(b); err != nil {
			return err
		}
	}
	pt.fleet = fleet
	pt.sources, pt.maxIngest, pt.sinceScan, pt.globalAt, pt.globalFeat = srcs, maxIngest, int(sinceScan), globalAt, globalFeat
	pt.warming = pt.hold
	pt.minSource = source{minTopic, int32(minPart)}
	return nil
}
