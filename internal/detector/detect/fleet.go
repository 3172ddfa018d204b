package detect

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/baseline"
	"github.com/agentwatch/agentwatch/pkg/features"
)

// fleetFeatures are the partition-wide sums the fleet gauge follows, one
// baseline.Series each: every closed window's calls and 5xx answers over
// the partition's agents.
var fleetFeatures = [...]features.ID{features.Calls, features.Server5xx}

const numFleet = len(fleetFeatures)

// FleetMinZ is how far, in Poisson standard deviations, a partition's sum
// must be above its reference r before a report pages: x ≥ r + FleetMinZ·√(r+1),
// where r is the larger of what the fleet series expected and the slot's
// high-water mark. A Series judges real-valued gauges, with a scale learnt
// from the series; a count that is almost always 0 (a healthy fleet's
// 5xx) gets a tiny scale, and one stray 5xx would look like an outage. The
// counting noise bounds that: a change in a count is news only once it is
// beyond it.
const FleetMinZ = 5

// FleetHighHalfLife is the half-life, in windows of the slot, of a fleet
// gauge's per-slot high-water mark: about a week of one hour of weekdays.
const FleetHighHalfLife = 300

// fleetGauge follows one partition-wide sum.
type fleetGauge struct {
	s baseline.Series
	// hi is, per hour-of-week slot (features.Slot), a decaying maximum of
	// the sums seen in it: what the fleet has recently done at that hour.
	hi [features.SlotsPerWeek]float64
}

// observeFleet feeds window ws's partition-wide sums to the partition's
// fleet series and raises a fleet_gauge anomaly for each that reports an
// increase. The series are the code the NAB evaluation scores
// (baseline.Series with Settings.Fleet, DefaultSeriesParams by default);
// an anomaly is raised when a point's reported score reaches the series'
// AlertScore (3, p <= 0.001; NAB's standard-profile threshold,
// 0.0082 × 300 ≈ 2.5, is slightly more lenient), with three differences
// the detector needs:
//
//   - only increases page: a point below what the series expected (a
//     holiday, a quiet night, a partition losing agents) is learnt, never
//     raised; and an increase must be beyond counting noise (FleetMinZ)
//     above both what the series expected and the slot's high-water mark,
//     what the fleet has recently done at that hour (FleetHighHalfLife).
//     The series adapts to a long dip (a change point), so without the
//     mark the return to normal after a holiday would page;
//   - nothing is raised before the series has learnt SettlePoints
//     windows, where NAB has its probationary period;
//   - an increase while a global event is under way on the partition
//     (within GlobalGapMs of its last global window) is folded into it:
//     the outage already has its alert.
func (p *Processor) observeFleet(pt *partition, ws int64, sums *[numFleet]float64, active int) {
	fp := &p.set.Fleet
	slot := features.Slot(ws)
	decay := math.Exp2(-1.0 / FleetHighHalfLife)
	for i, id := range fleetFeatures {
		g := &pt.fleet[i]
		x := sums[i]
		r := g.s.Observe(fp, ws, x)
		hi := g.hi[slot]
		g.hi[slot] = max(x, hi*decay)
		ref := max(r.Expected, hi, 0)
		if r.Reported < fp.AlertScore || g.s.Points() <= fp.SettlePoints || !(x >= ref+FleetMinZ*math.Sqrt(ref+1)) {
			continue
		}
		if pt.globalAt != 0 && ws >= pt.globalAt && ws-pt.globalAt <= p.set.GlobalGapMs {
			p.stats.Folded++
			continue
		}
		agentID := "*fleet/p" + strconv.Itoa(int(pt.id))
		an := anomaly.Anomaly{
			V: anomaly.Version, ID: anomaly.ID(agentID+"/"+id.String(), ws, anomaly.FleetGauge), AgentID: agentID, Kind: anomaly.FleetGauge,
			WindowStartMs: ws, WindowEndMs: ws + p.set.Features.WindowMs, Partition: pt.id,
			Count:       int(x),
			Explanation: []anomaly.Feature{{Name: id.String(), Observed: x, Expected: round(r.Expected), Surprise: round(r.Surprise), Contribution: 1}},
		}
		p.placeEvidence(&an, placeFleetGaugeBand, r.Score, fp.AlertScore)
		switch id {
		case features.Server5xx:
			an.Summary = fmt.Sprintf("The %d agents active on partition %d got %s 5xx answers in one window where about %s were expected (gauge evidence %.1f, -log10 p): errors rose across the fleet, as when an upstream API fails.",
				active, pt.id, features.FormatNumber(x), features.FormatNumber(r.Expected), r.Score)
		default:
			an.Summary = fmt.Sprintf("The %d agents active on partition %d made %s calls in one window where about %s were expected (gauge evidence %.1f, -log10 p): traffic rose across the fleet, not for one agent alone. Agents that stand out on their own are alerted separately.",
				active, pt.id, features.FormatNumber(x), features.FormatNumber(r.Expected), r.Score)
		}
		p.emit(an)
	}
}

// appendFleet appends the partition's fleet gauges: their count, then
// each as its series (a length and Series.AppendBinary) and its slots'
// high-water marks (float64s).
func (pt *partition) appendFleet(dst []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(numFleet))
	for i := range pt.fleet {
		g := &pt.fleet[i]
		blob := g.s.AppendBinary(nil)
		dst = binary.AppendUvarint(dst, uint64(len(blob)))
		dst = append(dst, blob...)
		for _, h := range g.hi {
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(h))
		}
	}
	return dst
}

// readFleet reads what appendFleet wrote.
func readFleet(b []byte) ([numFleet]fleetGauge, []byte, error) {
	var out [numFleet]fleetGauge
	n, k := binary.Uvarint(b)
	if k <= 0 || n != uint64(numFleet) {
		return out, nil, errors.New("fleet gauge: want 2 series")
	}
	b = b[k:]
	for i := range out {
		g := &out[i]
		l, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < l {
			return out, nil, errors.New("fleet gauge: truncated")
		}
		if err := g.s.UnmarshalBinary(b[k : k+int(l)]); err != nil {
			return out, nil, fmt.Errorf("fleet gauge %s: %w", fleetFeatures[i], err)
		}
		b = b[k+int(l):]
		if len(b) < 8*len(g.hi) {
			return out, nil, errors.New("fleet gauge: truncated high-water marks")
		}
		for j := range g.hi {
			g.hi[j] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*j:]))
			if !(g.hi[j] >= 0) || math.IsInf(g.hi[j], 0) {
				return out, nil, fmt.Errorf("fleet gauge %s: high-water mark %g", fleetFeatures[i], g.hi[j])
			}
		}
		b = b[8*len(g.hi):]
	}
	return out, b, nil
}
