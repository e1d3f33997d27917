package main

import (
	"fmt"
	"math"
	"sort"
	"time"
)

// slope returns the least-squares slope of y over x.
func slope(x, y []float64) float64 {
	n := float64(len(x))
	if n < 2 {
		return 0
	}
	var sx, sy, sxx, sxy float64
	for i := range x {
		sx += x[i]
		sy += y[i]
		sxx += x[i] * x[i]
		sxy += x[i] * y[i]
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}

// Thresholds of the original method.
const (
	paceRatio   = 0.99 // export slope / request slope
	backlogFrac = 0.01 // backlog growth allowed, as a fraction of the rate
	warmup      = 500 * time.Millisecond

	storeRatio      = 0.95
	storeRatioSlack = 0.05
)

// analyze fills the rates, ratios, latencies and verdicts of a step from
// the probe's CSV rows and the samples taken during the step.
//
// The original method: over the load window, regress the cumulative number
// of requests and the cumulative number of exports on time; the rate is
// sustained when the export slope keeps pace with the request slope (ratio
// ≥ 0.99) and the backlog between them does not grow.
func analyze(r *stepResult, rows []probeRow, samples []sample, t0, t1 time.Time) {
	var pubExports, pubCaptures []int64
	all := make([]probeRow, 0, len(rows))
	var latExp []float64
	for _, row := range rows {
		all = append(all, row)
		if row.publish {
			pubExports = append(pubExports, row.export)
			pubCaptures = append(pubCaptures, row.capture)
			latExp = append(latExp, row.latMs)
		}
	}
	r.ExportedPub = uint64(len(pubExports))
	r.ExportedAll = uint64(len(rows))
	r.ExportLost = int64(r.Expected) - int64(r.ExportedAll)
	r.LatExport = percentiles(latExp)
	sort.Slice(pubExports, func(i, j int) bool { return pubExports[i] < pubExports[j] })
	sort.Slice(pubCaptures, func(i, j int) bool { return pubCaptures[i] < pubCaptures[j] })

	var ts, req, exp, wire, sto, backE, backS []float64
	for _, s := range samples {
		if s.t.Before(t0.Add(warmup)) || s.t.After(t1) {
			continue
		}
		x := s.t.Sub(t0).Seconds()
		e := float64(sort.Search(len(pubExports), func(i int) bool { return pubExports[i] > s.t.UnixNano() }))
		ts = append(ts, x)
		wire = append(wire, float64(sort.Search(len(pubCaptures), func(i int) bool { return pubCaptures[i] > s.t.UnixNano() })))
		req = append(req, float64(s.sent))
		exp = append(exp, e)
		sto = append(sto, s.stored)
		backE = append(backE, float64(s.sent)-e)
		backS = append(backS, float64(s.sent)-s.stored)
	}
	r.Offered = slope(ts, req)
	if len(ts) < 2 { // too short a step for a regression: use the totals
		r.Offered = float64(r.Sent) / r.Duration
	}
	r.ExportRate = slope(ts, exp)
	r.WireRate = slope(ts, wire)
	r.StoreRate = slope(ts, sto)
	if r.Offered > 0 {
		r.ExportRatio = r.ExportRate / r.Offered
		r.StoreRatio = r.StoreRate / r.Offered
	}
	r.ExportBacklog = slope(ts, backE)
	storeBacklog := slope(ts, backS)
	r.KeepsPaceExport = r.ExportRatio >= paceRatio && r.ExportBacklog <= backlogFrac*r.Offered &&
		r.ExportLost <= 0 && r.KernelDrops == 0 && r.QueueDrops == 0
	// The store writes in batches (every 200 ms or 1000 documents): its
	// cumulative curve is a staircase and its slope only accurate to a few
	// per cent over a short window. It keeps pace when its slope is within
	// 5 %, its backlog grows by less than 5 % of the rate and everything is
	// stored by the end of the drain; sustainable() also asks p99
	// capture→store < 1 s, which bounds the backlog in time.
	r.KeepsPaceStore = r.KeepsPaceExport && r.StoreRatio >= storeRatio && storeBacklog <= storeRatioSlack*r.Offered && r.NotStored <= 0

	// capture → store: the k-th flow exported is taken to be the k-th
	// document stored (the store writes in batches, in order); its store
	// time is when the store's insert counter reached k, interpolated
	// between the 100 ms samples.
	sort.Slice(all, func(i, j int) bool { return all[i].export < all[j].export })
	var latStore []float64
	j := 0
	for k, row := range all {
		need := float64(k + 1)
		for j < len(samples) && samples[j].stored < need {
			j++
		}
		if j >= len(samples) {
			break
		}
		st := samples[j].t
		if j > 0 && samples[j].stored > samples[j-1].stored {
			a, b := samples[j-1], samples[j]
			frac := (need - a.stored) / (b.stored - a.stored)
			st = a.t.Add(time.Duration(frac * float64(b.t.Sub(a.t))))
		}
		if row.publish {
			latStore = append(latStore, math.Max(0, float64(st.UnixNano()-row.capture)/1e6))
		}
	}
	r.LatStoreN = len(latStore)
	r.LatStore = percentiles(latStore)
}

// original is the original prototype's sustainable throughput (flows/s).
var original = map[int]float64{0: 100, 1: 70, 2: 40}

type verdict struct {
	QoS          int
	ExportRate   float64 // offered rate of the highest step the probe kept pace with
	ExportTarget float64
	ExportAtTop  bool // the highest step tested kept pace: a lower bound
	StoreRate    float64
	StoreTarget  float64
	StoreAtTop   bool
	StoreLatP99  float64 // at the sustainable end-to-end rate
	Bottleneck   string
	ExportStep   *stepResult
	StoreStep    *stepResult

	// Store out of the path (probe → IPFIX file, no collector).
	ProbeOnlyRate       float64
	ProbeOnlyAtTop      bool
	ProbeOnlyStep       *stepResult
	ProbeOnlyBottleneck string
}

// sustainable picks, per QoS, the highest rate that kept pace, and names the
// bottleneck at the first step that did not.
func sustainable(rs []*stepResult, qos int) verdict {
	v := verdict{QoS: qos}
	var steps []*stepResult
	var probeOnly []*stepResult
	for _, r := range rs {
		switch {
		case r.QoS != qos:
		case r.Path == "probe-only":
			probeOnly = append(probeOnly, r)
		default:
			steps = append(steps, r)
		}
	}
	sort.Slice(steps, func(i, j int) bool { return steps[i].Target < steps[j].Target })
	sort.Slice(probeOnly, func(i, j int) bool { return probeOnly[i].Target < probeOnly[j].Target })
	for i, r := range probeOnly {
		if r.KeepsPaceExport && r.LatExport[2] < 1000 {
			if v.ProbeOnlyStep == nil || r.Offered > v.ProbeOnlyRate {
				v.ProbeOnlyRate, v.ProbeOnlyStep, v.ProbeOnlyAtTop = r.Offered, r, i == len(probeOnly)-1
			}
		} else if v.ProbeOnlyBottleneck == "" {
			v.ProbeOnlyBottleneck = bottleneck(r)
		}
		if v.ProbeOnlyBottleneck == "" && r.Offered < 0.97*r.Target {
			v.ProbeOnlyBottleneck = bottleneck(r)
		}
	}
	if v.ProbeOnlyBottleneck == "" && len(probeOnly) > 0 {
		v.ProbeOnlyBottleneck = "none reached: every rate tested kept pace"
	}
	var firstFail *stepResult
	for i, r := range steps {
		okE := r.KeepsPaceExport && r.LatExport[2] < 1000
		okS := r.KeepsPaceStore && r.LatStore[2] < 1000
		if okE && (v.ExportStep == nil || r.Offered > v.ExportRate) {
			v.ExportRate, v.ExportTarget, v.ExportStep, v.ExportAtTop = r.Offered, r.Target, r, i == len(steps)-1
		}
		if okS && (v.StoreStep == nil || r.Offered > v.StoreRate) {
			v.StoreRate, v.StoreTarget, v.StoreStep, v.StoreAtTop = r.Offered, r.Target, r, i == len(steps)-1
			v.StoreLatP99 = r.LatStore[2]
		}
		if firstFail == nil && !keptPaceEndToEnd(r) {
			firstFail = r
		}
	}
	if len(steps) == 0 {
		v.Bottleneck = "not measured (no rate given for this QoS)"
		return v
	}
	if firstFail == nil {
		v.Bottleneck = "none reached: every rate tested kept pace end to end (raise the rates)"
		return v
	}
	if firstFail != nil {
		v.Bottleneck = bottleneck(firstFail)
	}
	return v
}

// keptPaceEndToEnd tells a step stored end to end at the rate it was
// meant to test: stored at the offered rate, p99 capture → store under a
// second, and the target offered. The first step that did not is where
// sustainable names the bottleneck; refineTarget searches below it.
func keptPaceEndToEnd(r *stepResult) bool {
	return r.KeepsPaceStore && r.LatStore[2] < 1000 && r.Offered >= 0.97*r.Target
}

// bottleneck names the component that limited a step.
func bottleneck(r *stepResult) string {
	shares := fmtShares(r)
	switch {
	case r.Offered < 0.97*r.Target:
		who := "load generator"
		switch {
		case r.CPUBroker >= 85:
			who = "broker (mosquitto is single-threaded and used a whole core)"
		case r.CPUMachine >= 90:
			who = "CPU: the machine was saturated (broker, load generator and probe share 2 cores)"
		case r.CPULoadgen >= 85:
			who = "load generator"
		case r.QoS > 0:
			who = "broker round trips (acks) limit the generator's window"
		}
		return who + fmt.Sprintf(" — offered %.0f/s of %.0f/s; %s", r.Offered, r.Target, shares)
	case !r.KeepsPaceExport && r.KernelDrops == 0 && r.QueueDrops == 0 && r.ExportLost <= 0 && r.LatExport[2] < 1000 &&
		r.WireRate < paceRatio*r.Offered && r.ExportRate >= paceRatio*r.WireRate:
		// The probe exported flows as fast as they completed on the wire
		// (kernel capture timestamps): the lag is upstream of the capture —
		// messages written by the generator but not yet read and answered
		// by the broker.
		who := "broker"
		if r.CPUMachine >= 90 && r.CPUBroker < 85 {
			who = "CPU: the machine was saturated (broker, load generator and probe share 2 cores)"
		}
		return fmt.Sprintf("%s — transactions completed on the wire at %.0f/s of %.0f/s written (the probe exported them as they completed: %.0f/s, no drops, p99 capture→export %.0f ms); %s",
			who, r.WireRate, r.Offered, r.ExportRate, r.LatExport[2], shares)
	case !r.KeepsPaceExport || r.LatExport[2] >= 1000:
		return fmt.Sprintf("probe — export ratio %.3f, kernel drops %d, queue drops %d, p99 capture→export %.0f ms; %s",
			r.ExportRatio, r.KernelDrops, r.QueueDrops, r.LatExport[2], shares)
	case r.CollectorRecords+100 < r.ExportedAll && r.Stored+100 >= r.CollectorRecords:
		return fmt.Sprintf("collector — received %d of %d exported flows; %s", r.CollectorRecords, r.ExportedAll, shares)
	default:
		return fmt.Sprintf("store — stored %.0f/s of %.0f/s offered (ratio %.2f), %d documents still queued after %.0f s of drain; %s",
			r.StoreRate, r.Offered, r.StoreRatio, r.StoreBacklogEnd, r.DrainSeconds, shares)
	}
}

func fmtShares(r *stepResult) string {
	return fmt.Sprintf("CPU (%% of one core): broker %.0f, load generator %.0f, probe %.0f, collector+store %.0f; machine %.0f%% busy",
		r.CPUBroker, r.CPULoadgen, r.CPUProbe, r.CPUCollector, r.CPUMachine)
}
