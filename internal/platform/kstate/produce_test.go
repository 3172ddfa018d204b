package kstate

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	kafkago "github.com/segmentio/kafka-go"
	produceAPI "github.com/segmentio/kafka-go/protocol/produce"
)

// fakeBroker answers produce requests in memory, as the transport would:
// a request whose partitions have different leaders (split) fails with the
// transport's *produceAPI.Error before it is sent.
type fakeBroker struct {
	mu sync.Mutex
	// asked holds, per request sent, its topics and partitions in order
	// and the records of each.
	asked [][]string
	// leader says which broker leads a partition (absent: broker 1).
	leader map[tp]int
	// code is the error code a partition answers with.
	code map[tp]kafkago.Error
	// silent are partitions left out of the answer.
	silent map[tp]bool
	// err fails every request.
	err  error
	logs map[tp]int64
	// gate, when set, holds each request until it gets a value.
	gate chan struct{}
}

func (b *fakeBroker) RoundTrip(_ context.Context, _ net.Addr, m kafkago.Request) (kafkago.Response, error) {
	req := m.(*produceAPI.Request)
	if b.gate != nil {
		<-b.gate
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	leaders := map[int]bool{}
	for _, t := range req.Topics {
		for _, p := range t.Partitions {
			leaders[max(b.leader[tp{t.Topic, p.Partition}], 1)] = true
		}
	}
	if len(leaders) > 1 {
		return nil, produceAPI.NewError(errors.New("mismatching leaders"))
	}
	if b.err != nil {
		return nil, b.err
	}
	var sent []string
	res := &produceAPI.Response{}
	for _, t := range req.Topics {
		rt := produceAPI.ResponseTopic{Topic: t.Topic}
		for _, p := range t.Partitions {
			at := tp{t.Topic, p.Partition}
			var keys []string
			for {
				r, err := p.RecordSet.Records.ReadRecord()
				if err != nil {
					break
				}
				k, _ := io.ReadAll(r.Key)
				keys = append(keys, string(k))
			}
			sent = append(sent, at.String()+"="+strings.Join(keys, ","))
			if b.silent[at] {
				continue
			}
			rp := produceAPI.ResponsePartition{Partition: p.Partition, ErrorCode: int16(b.code[at])}
			if rp.ErrorCode == 0 {
				rp.BaseOffset = b.logs[at]
				b.logs[at] += int64(len(keys))
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		res.Topics = append(res.Topics, rt)
	}
	// An answer for a partition not asked for is ignored.
	res.Topics = append(res.Topics, produceAPI.ResponseTopic{Topic: "unasked", Partitions: []produceAPI.ResponsePartition{{Partition: 0, BaseOffset: 99}}})
	b.asked = append(b.asked, sent)
	return res, nil
}

func recs(keys ...string) []Record {
	out := make([]Record, len(keys))
	for i, k := range keys {
		out[i] = Record{Key: k, Value: []byte("v")}
	}
	return out
}

func TestProducePartsOfSeveralTopics(t *testing.T) {
	state0, state1, global := tp{"state", 0}, tp{"state", 1}, tp{"global", 0}
	parts := map[tp][]Record{state1: recs("b"), state0: recs("a1", "a2"), global: recs("g")}
	tests := []struct {
		name string
		b    *fakeBroker
		// want: the requests sent, and each partition's base offset or
		// the text its error contains.
		requests [][]string
		base     map[tp]int64
		err      map[tp]string
	}{
		{
			name:     "one leader: one request, topics by name, partitions in order",
			b:        &fakeBroker{logs: map[tp]int64{state0: 5, global: 7}},
			requests: [][]string{{"global/0=g", "state/0=a1,a2", "state/1=b"}},
			base:     map[tp]int64{state0: 5, state1: 0, global: 7},
		},
		{
			name:     "leaders differ: one request per partition",
			b:        &fakeBroker{leader: map[tp]int{global: 2}, logs: map[tp]int64{}},
			requests: [][]string{{"global/0=g"}, {"state/0=a1,a2"}, {"state/1=b"}},
			base:     map[tp]int64{state0: 0, state1: 0, global: 0},
		},
		{
			name:     "one partition refused: only it fails",
			b:        &fakeBroker{code: map[tp]kafkago.Error{global: kafkago.NotLeaderForPartition}, logs: map[tp]int64{}},
			requests: [][]string{{"global/0=g", "state/0=a1,a2", "state/1=b"}},
			base:     map[tp]int64{state0: 0, state1: 0},
			err:      map[tp]string{global: "write 1 records to global/0: [6] Not Leader For Partition"},
		},
		{
			name:     "a partition left out of the answer",
			b:        &fakeBroker{silent: map[tp]bool{state1: true}, logs: map[tp]int64{}},
			requests: [][]string{{"global/0=g", "state/0=a1,a2", "state/1=b"}},
			base:     map[tp]int64{state0: 0, global: 0},
			err:      map[tp]string{state1: "write 1 records to state/1: no answer for the partition"},
		},
		{
			name:     "the request failed: every partition says so",
			b:        &fakeBroker{err: io.ErrUnexpectedEOF},
			requests: nil,
			err: map[tp]string{state0: "write 2 records to state/0: unexpected EOF", state1: "write 1 records to state/1: unexpected EOF",
				global: "write 1 records to global/0: unexpected EOF"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := &kafkago.Client{Addr: kafkago.TCP("fake:9092"), Transport: tt.b}
			got := produceParts(t.Context(), client, parts)
			if len(got) != len(parts) {
				t.Errorf("outcomes for %d partitions, want %d: %v", len(got), len(parts), got)
			}
			sent := slices.Clone(tt.b.asked)
			slices.SortFunc(sent, func(x, y []string) int { return strings.Compare(x[0], y[0]) })
			if !slices.EqualFunc(sent, tt.requests, slices.Equal) {
				t.Errorf("requests sent %q, want %q", sent, tt.requests)
			}
			for p, want := range tt.base {
				if r := got[p]; r.err != nil || r.base != want {
					t.Errorf("%s: base %d, err %v; want %d", p, r.base, r.err, want)
				}
			}
			for p, want := range tt.err {
				if r := got[p]; r.err == nil || !strings.Contains(r.err.Error(), want) {
					t.Errorf("%s: err %v, want it to say %q", p, r.err, want)
				}
			}
			if r := got[global]; tt.err[global] != "" && !retryable(r.err) {
				t.Errorf("%s: %v is not retryable; want what the transport said kept for the retry decision", global, r.err)
			}
		})
	}
}

func TestProduceRequestSkipsAPartitionWithoutKey(t *testing.T) {
	parts := map[tp][]Record{{"b", 1}: recs("x"), {"b", 0}: {{Key: ""}}, {"a", 3}: recs("y")}
	req, asked, out := produceRequest(parts, time.Now(), 5000)
	if !slices.Equal(asked, []tp{{"a", 3}, {"b", 1}}) {
		t.Errorf("asked %v, want [a/3 b/1]", asked)
	}
	var layout []string
	for _, rt := range req.Topics {
		for _, rp := range rt.Partitions {
			layout = append(layout, tp{rt.Topic, rp.Partition}.String())
		}
	}
	if !slices.Equal(layout, []string{"a/3", "b/1"}) || len(req.Topics) != 2 || req.Timeout != 5000 || req.Acks != int16(kafkago.RequireAll) {
		t.Errorf("request %+v (partitions %v); want topics a and b, a/3 then b/1, acks from all, timeout 5000", req, layout)
	}
	if r, ok := out[tp{"b", 0}]; !ok || r.err == nil || !strings.Contains(r.err.Error(), "write to b/0: a record needs a key") {
		t.Errorf("b/0: %+v, want its own error", r)
	}
}

// A Producer's request that carries two topics counts once in each
// topic's series, with that topic's records, and once in the shared
// series; after Close, writes are refused.
func TestProducerCountsASharedRequestPerTopicAndOnce(t *testing.T) {
	b := &fakeBroker{logs: map[tp]int64{}, gate: make(chan struct{})}
	m := NewMetrics(nil)
	p := newProducer(&kafkago.Client{Addr: kafkago.TCP("fake:9092"), Transport: b}, &kafkago.Transport{}, 5*time.Second)
	p.com.observeRequest = m.sharedObserver()
	p.observeTopic("state", m.observer("state"))
	p.observeTopic("global", m.observer("global"))
	var wg sync.WaitGroup
	write := func(topic string, part int32, keys ...string) {
		wg.Go(func() {
			if _, err := p.append(t.Context(), topic, part, recs(keys...)); err != nil {
				t.Error(err)
			}
		})
	}
	write("state", 1, "lead")
	waitFor(t, func() bool { p.com.mu.Lock(); defer p.com.mu.Unlock(); return p.com.flushing })
	write("state", 0, "s1", "s2")
	write("global", 0, "g")
	waitFor(t, func() bool {
		p.com.mu.Lock()
		defer p.com.mu.Unlock()
		return p.com.next != nil && len(p.com.next.parts) == 2
	})
	close(b.gate)
	wg.Wait()
	if len(b.asked) != 2 || len(b.asked[1]) != 2 {
		t.Fatalf("requests %q, want the leader's then one with global/0 and state/0", b.asked)
	}
	hist := func(h prometheus.Observer) (uint64, float64) {
		var d dto.Metric
		if err := h.(prometheus.Metric).Write(&d); err != nil {
			t.Fatal(err)
		}
		return d.GetHistogram().GetSampleCount(), d.GetHistogram().GetSampleSum()
	}
	for _, c := range []struct {
		name       string
		h          prometheus.Observer
		count, sum int
	}{
		{"state", m.batch.WithLabelValues("state"), 2, 3},
		{"global", m.batch.WithLabelValues("global"), 1, 1},
		{"shared", m.shared, 2, 4},
	} {
		if n, sum := hist(c.h); n != uint64(c.count) || sum != float64(c.sum) {
			t.Errorf("%s: %d requests of %g records, want %d of %d", c.name, n, sum, c.count, c.sum)
		}
	}
	p.Close()
	if _, err := p.append(t.Context(), "state", 0, recs("late")); !errors.Is(err, ErrClosed) {
		t.Errorf("a write after Close: %v, want ErrClosed", err)
	}
}
