// Package metrics serves Prometheus metrics built from the counters the
// other packages already keep: a component hands a function that emits its
// current values; nothing is sprinkled through the hot paths.
package metrics

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

// Emitter receives metric values during a scrape.
type Emitter struct{ ch chan<- prometheus.Metric }

// Counter emits a monotonically increasing value.
func (e Emitter) Counter(name, help string, v float64, labels ...string) {
	e.emit(prometheus.CounterValue, name, help, v, labels)
}

// Gauge emits a value that may go up and down.
func (e Emitter) Gauge(name, help string, v float64, labels ...string) {
	e.emit(prometheus.GaugeValue, name, help, v, labels)
}

// emit builds a const metric; labels alternate name, value.
func (e Emitter) emit(t prometheus.ValueType, name, help string, v float64, labels []string) {
	var names, values []string
	for i := 0; i+1 < len(labels); i += 2 {
		names = append(names, labels[i])
		values = append(values, labels[i+1])
	}
	m, err := prometheus.NewConstMetric(prometheus.NewDesc(name, help, names, nil), t, v, values...)
	if err == nil {
		e.ch <- m
	}
}

// Func is a component's emitter function, called on every scrape.
type Func func(e Emitter)

type funcCollector struct{ fns []Func }

// Describe is empty: the collector is "unchecked" (metrics vary by label).
func (funcCollector) Describe(chan<- *prometheus.Desc) {}

func (c funcCollector) Collect(ch chan<- prometheus.Metric) {
	for _, fn := range c.fns {
		fn(Emitter{ch})
	}
}

// Registry returns a registry with the Go runtime and process metrics and
// the given component functions.
func Registry(fns ...Func) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(funcCollector{fns})
	return reg
}

// Serve exposes /metrics on addr until ctx ends. It returns once listening
// (or with the listen error).
func Serve(ctx context.Context, addr string, log zerolog.Logger, fns ...Func) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return ServeListener(ctx, ln, log, fns...), nil
}

// ServeListener exposes /metrics on a listener bound earlier (before a
// privilege drop, for a port below 1024) until ctx ends.
func ServeListener(ctx context.Context, ln net.Listener, log zerolog.Logger, fns ...Func) net.Addr {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(Registry(fns...), promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("metrics server stopped")
		}
	}()
	log.Info().Str("address", ln.Addr().String()).Msg("serving Prometheus metrics on /metrics")
	return ln.Addr()
}
