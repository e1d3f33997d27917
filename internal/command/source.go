package command

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"github.com/mission-ids/mission/collector"
	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/store"
)

// loadFlows reads the MQTT flows of the source the flags name (a
// JSON-lines file, an IPFIX file or the store), within --from/--to, in
// time order.
func loadFlows(c *cli.Context, log zerolog.Logger) ([]flow.Record, error) {
	from, to := timeRange(c)
	keep := func(r *flow.Record) bool {
		return (from.IsZero() || !r.Start.Before(from)) && (to.IsZero() || r.Start.Before(to))
	}
	var recs []flow.Record
	add := func(r *flow.Record) {
		if keep(r) {
			recs = append(recs, *r)
		}
	}
	switch {
	case c.String(flagJSONL) != "":
		var in io.Reader = os.Stdin
		if p := c.String(flagJSONL); p != "-" {
			f, err := os.Open(p)
			if err != nil {
				return nil, fmt.Errorf("--%s: %w", flagJSONL, err)
			}
			defer f.Close()
			in = f
		}
		err := flow.ReadJSONLines(in, func(r *flow.Record) error { add(r); return nil })
		if err != nil {
			return nil, fmt.Errorf("--%s: %w", flagJSONL, err)
		}
	case c.String(flagIPFIX) != "":
		f, err := os.Open(c.String(flagIPFIX))
		if err != nil {
			return nil, fmt.Errorf("--%s: %w", flagIPFIX, err)
		}
		defer f.Close()
		cfg := collector.Config{EnterpriseNumber: uint32(c.Uint(flagEnterpriseNumber)), Logger: log}
		err = collector.ReadRecords(c.Context, f, cfg, func(r *flow.Record, mqtt bool) error {
			if mqtt {
				add(r)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("--%s: %w", flagIPFIX, err)
		}
	default:
		rd, err := openReader(c, log)
		if err != nil {
			return nil, err
		}
		defer rd.Close()
		err = rd.Records(c.Context, store.Query{From: from, To: to}, func(r *flow.Record) error {
			recs = append(recs, *r)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read stored flows: %w", err)
		}
		return recs, nil // in time order already
	}
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].Start.Before(recs[j].Start) })
	return recs, nil
}

// openReader opens the store the flags name for reading.
func openReader(c *cli.Context, log zerolog.Logger) (*store.Reader, error) {
	url, err := mongoURL(c)
	if err != nil {
		return nil, err
	}
	rd, err := store.OpenReader(c.Context, store.ReaderConfig{URL: url, Database: c.String(flagMongoCollection),
		Collection: c.String(flagCollection), DataDir: c.String(flagDataDir)}, log)
	if errors.Is(err, store.ErrNoDatabase) {
		return nil, fmt.Errorf("%w; run mission collect or all-in-one first, or give --%s (mine and detect also read --%s or --%s)",
			err, flagMongoURL, flagJSONL, flagIPFIX)
	}
	return rd, storeError(err)
}
