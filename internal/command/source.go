package command

import (
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/ipfix"
	"github.com/mission-ids/mission/mining"
)

// loadFlows reads flows from the source the flags name (a JSON-lines
// file, an IPFIX file or the store), within --from/--to, in time order.
func loadFlows(c *cli.Context, log zerolog.Logger) ([]flow.Record, error) {
	from, to := timeRange(c)
	keep := func(r *flow.Record) bool {
		return (from.IsZero() || !r.Start.Before(from)) && (to.IsZero() || r.Start.Before(to))
	}
	var recs []flow.Record
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
		all, err := mining.ReadRecords(in)
		if err != nil {
			return nil, fmt.Errorf("--%s: %w", flagJSONL, err)
		}
		for i := range all {
			if keep(&all[i]) {
				recs = append(recs, all[i])
			}
		}
	case c.String(flagIPFIX) != "":
		f, err := os.Open(c.String(flagIPFIX))
		if err != nil {
			return nil, fmt.Errorf("--%s: %w", flagIPFIX, err)
		}
		defer f.Close()
		pen := uint32(c.Uint(flagEnterpriseNumber))
		sess := ipfix.NewSession(ipfix.Config{Registry: ipfix.NewRegistry(pen)}, ipfix.SessionKey{Transport: ipfix.File})
		dec := flow.NewDecoder(pen)
		err = ipfix.DecodeFile(f, sess, func(rec ipfix.Record) error {
			var r flow.Record
			if !rec.Template.IsOptions() && dec.Decode(rec, &r) && keep(&r) {
				recs = append(recs, r)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("--%s: %w", flagIPFIX, err)
		}
	default:
		coll, done, err := connectStore(c, log)
		if err != nil {
			return nil, err
		}
		defer done()
		ctx := c.Context
		filter := bson.D{}
		rng := bson.D{}
		if !from.IsZero() {
			rng = append(rng, bson.E{Key: "$gte", Value: from})
		}
		if !to.IsZero() {
			rng = append(rng, bson.E{Key: "$lt", Value: to})
		}
		if len(rng) > 0 {
			filter = bson.D{{Key: "flowStartNanoseconds", Value: rng}}
		}
		cur, err := coll.Find(ctx, filter, options.Find().SetSort(bson.D{{Key: "flowStartNs", Value: 1}}))
		if err != nil {
			return nil, fmt.Errorf("read stored flows: %w", err)
		}
		defer cur.Close(ctx)
		for cur.Next(ctx) {
			var d flow.Document
			if err := cur.Decode(&d); err != nil {
				return nil, fmt.Errorf("stored flow: %w", err)
			}
			r, err := mining.RecordFromDocument(&d)
			if err != nil {
				return nil, err
			}
			if keep(&r) {
				recs = append(recs, r)
			}
		}
		if err := cur.Err(); err != nil {
			return nil, err
		}
	}
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].Start.Before(recs[j].Start) })
	return recs, nil
}
