package coaptrack

import (
	"sync"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/probe/app"
)

// Sharded spreads datagrams over several Trackers, each on a goroutine of
// its own, by endpoint pair: every message of an exchange, of an
// observation and of a ping is between the same two endpoints, so a
// shard sees all of them and tracks them exactly as one Tracker would. It
// is for reading capture files on machines with several cores: datagrams
// are copied into batches that a shard takes up when full (or at
// AdvanceAt), so a flow reaches the FlowHandler later in wall time than
// with a Tracker, but with the same fields; only the order of flows from
// different shards differs. The caller's goroutine hands the finished
// flows to out (from Datagram, AdvanceAt and FlushAll), and gives them
// their flow ids, so out need not be safe for concurrent use.
//
// Sharded implements app.DatagramTracker; like Tracker it is not safe for
// concurrent use. MaxExchanges and MaxObservations bound the whole: each
// shard holds an equal share.
type Sharded struct {
	cfg     Config
	out     app.FlowHandler
	shards  []*shard
	results chan []flow.Record // finished flows, from the shards
	free    chan []flow.Record // emptied result batches
	running bool
	wg      sync.WaitGroup
	seed    uint64
}

// shard is one Tracker and the batch of work being filled for it.
type shard struct {
	t     *Tracker
	in    chan *work
	free  chan *work
	cur   *work
	mu    sync.Mutex
	stats Stats
	flows []flow.Record // finished by t during the current work
}

// work is a batch of datagrams (their payloads copied into buf) and
// timer advances, in capture order.
type work struct {
	items []workItem
	buf   []byte
}

type workItem struct {
	src, dst  endpoint
	off, n    uint32
	time      int64
	kind      uint8 // itemDatagram, itemAdvance, itemFlush
	truncated bool
}

const (
	itemDatagram = iota
	itemAdvance
	itemFlush
)

const (
	shardBatch   = 512     // datagrams per batch
	shardBufSize = 1 << 17 // payload bytes per batch before it is sent
)

// NewSharded returns n shards (at least 1) handing finished flows to out.
func NewSharded(cfg Config, n int, out app.FlowHandler) *Sharded {
	cfg.defaults()
	s := &Sharded{cfg: cfg, out: out, results: make(chan []flow.Record, 4*max(n, 1)), free: make(chan []flow.Record, 4*max(n, 1))}
	for range max(n, 1) {
		sh := &shard{in: make(chan *work, 4), free: make(chan *work, 6)}
		tcfg := cfg
		tcfg.FlowIDs = func() uint64 { return 0 } // given by the caller's goroutine
		// The bounds are the whole's: each shard holds its share.
		tcfg.MaxExchanges = max(cfg.MaxExchanges/max(n, 1), 1)
		tcfg.MaxObservations = max(cfg.MaxObservations/max(n, 1), 1)
		sh.t = New(tcfg, app.FlowFunc(sh.keep))
		s.shards = append(s.shards, sh)
	}
	s.seed = s.shards[0].t.seed
	return s
}

// keep is the shard's Tracker's FlowHandler: it keeps a copy (the
// record's CoAP part and token are already the record's own).
func (sh *shard) keep(r *flow.Record) { sh.flows = append(sh.flows, *r) }

func (s *Sharded) start() {
	s.running = true
	for _, sh := range s.shards {
		s.wg.Add(1)
		go s.run(sh)
	}
}

// run is a shard's goroutine.
func (s *Sharded) run(sh *shard) {
	defer s.wg.Done()
	var d app.Datagram
	var la lookahead
	var pre [lookaheadBatch]planned
	for w := range sh.in {
		for i := range w.items {
			if i%lookaheadBatch == 0 {
				for j := i; j < min(i+lookaheadBatch, len(w.items)); j++ {
					if it := &w.items[j]; it.kind == itemDatagram {
						sh.t.plan(&la, &it.src, &it.dst, w.buf[it.off:it.off+it.n], &pre[j-i])
					}
				}
				la.load()
			}
			it := &w.items[i]
			switch it.kind {
			case itemDatagram:
				d.Time, d.Truncated = it.time, it.truncated
				d.Payload = w.buf[it.off : it.off+it.n : it.off+it.n]
				sh.t.track(&d, it.src, it.dst, &pre[i%lookaheadBatch])
			case itemAdvance:
				sh.t.AdvanceAt(it.time)
			case itemFlush:
				sh.t.FlushAll()
			}
		}
		d.Payload = nil
		if len(sh.flows) > 0 {
			s.results <- sh.flows
			select {
			case b := <-s.free:
				sh.flows = b[:0]
			default:
				sh.flows = make([]flow.Record, 0, 256)
			}
		}
		st := sh.t.Stats()
		sh.mu.Lock()
		sh.stats = st
		sh.mu.Unlock()
		w.items, w.buf = w.items[:0], w.buf[:0]
		select {
		case sh.free <- w:
		default:
		}
	}
}

// lookaheadBatch is how many datagrams a shard loads the first table
// lines of together (Tracker.plan) before tracking them; 32 and 64 did
// equally well, 16 less (docs/benchmarks.md, "CoAP offline").
const lookaheadBatch = 32

// shardOf picks the shard of the endpoint pair x–y (either order).
func (s *Sharded) shardOf(x, y *endpoint) *shard {
	if len(s.shards) == 1 {
		return s.shards[0]
	}
	h := x.fold(s.seed) ^ y.fold(s.seed) // symmetric
	return s.shards[mum(h, 0x9e3779b97f4a7c15)%uint64(len(s.shards))]
}

// Datagram queues d for its shard.
func (s *Sharded) Datagram(d *app.Datagram) {
	if !s.running {
		s.start()
	}
	x, y := endpointOf(d.Src), endpointOf(d.Dst)
	sh := s.shardOf(&x, &y)
	w := s.batch(sh)
	off := len(w.buf)
	w.buf = append(w.buf, d.Payload...)
	w.items = append(w.items, workItem{src: x, dst: y, off: uint32(off), n: uint32(len(d.Payload)), time: d.Time, truncated: d.Truncated})
	if len(w.items) >= shardBatch || len(w.buf) >= shardBufSize {
		s.send(sh)
	}
}

// batch returns sh's batch being filled.
func (s *Sharded) batch(sh *shard) *work {
	if sh.cur == nil {
		select {
		case sh.cur = <-sh.free:
		default:
			sh.cur = &work{items: make([]workItem, 0, shardBatch), buf: make([]byte, 0, shardBufSize+2048)}
		}
	}
	return sh.cur
}

// send hands sh's batch over, then the finished flows that are ready;
// while the shard is busy, finished flows are delivered (a shard waiting
// to hand over its results must not hold up the caller, nor the caller
// it).
func (s *Sharded) send(sh *shard) {
	w := sh.cur
	if w == nil || len(w.items) == 0 {
		return
	}
	sh.cur = nil
	for sent := false; !sent; {
		select {
		case sh.in <- w:
			sent = true
		case b := <-s.results:
			s.emit(b)
		}
	}
	s.deliver()
}

// deliver hands the finished flows that are ready to out.
func (s *Sharded) deliver() {
	for {
		select {
		case b := <-s.results:
			s.emit(b)
		default:
			return
		}
	}
}

func (s *Sharded) emit(b []flow.Record) {
	for i := range b {
		b[i].FlowID = s.cfg.FlowIDs()
		s.out.Flow(&b[i]) // cleared below: out keeps a copy if anything
	}
	clear(b)
	select {
	case s.free <- b[:0]:
	default:
	}
}

// AdvanceAt runs every shard's timers at capture time now, after the
// datagrams given so far.
func (s *Sharded) AdvanceAt(now int64) {
	if !s.running {
		return
	}
	for _, sh := range s.shards {
		w := s.batch(sh)
		w.items = append(w.items, workItem{kind: itemAdvance, time: now})
		s.send(sh)
	}
}

// FlushAll ends everything open in every shard, hands every flow to out
// and stops the shards' goroutines (a later Datagram starts them again).
func (s *Sharded) FlushAll() {
	if !s.running {
		return
	}
	for _, sh := range s.shards {
		w := s.batch(sh)
		w.items = append(w.items, workItem{kind: itemFlush})
		s.send(sh)
		close(sh.in)
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	for waiting := true; waiting; {
		select {
		case b := <-s.results:
			s.emit(b)
		case <-done:
			waiting = false
		}
	}
	s.deliver()
	for _, sh := range s.shards {
		sh.in = make(chan *work, 4)
	}
	s.running = false
}

// Stats sums the shards' counters (as of their latest batch; exact after
// FlushAll).
func (s *Sharded) Stats() Stats {
	var sum Stats
	for _, sh := range s.shards {
		sh.mu.Lock()
		st := sh.stats
		sh.mu.Unlock()
		sum.add(&st)
	}
	return sum
}

func (s *Stats) add(o *Stats) {
	s.Datagrams += o.Datagrams
	s.Bytes += o.Bytes
	s.Malformed += o.Malformed
	s.Violations += o.Violations
	for i := range s.Messages {
		s.Messages[i] += o.Messages[i]
	}
	s.Retransmissions += o.Retransmissions
	s.Duplicates += o.Duplicates
	s.Unmatched += o.Unmatched
	s.Ignored += o.Ignored
	s.Superseded += o.Superseded
	s.Evicted += o.Evicted
	s.LingerEvicted += o.LingerEvicted
	s.ObservationsEvicted += o.ObservationsEvicted
	s.CaseKeys += o.CaseKeys
	s.CaseKeysTooLong += o.CaseKeysTooLong
	for i := range s.Flows {
		s.Flows[i] += o.Flows[i]
	}
	for i := range s.FlowsByEnd {
		s.FlowsByEnd[i] += o.FlowsByEnd[i]
	}
	s.Open += o.Open
	s.Lingering += o.Lingering
	s.Observations += o.Observations
}
