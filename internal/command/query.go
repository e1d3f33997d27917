package command

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/mission-ids/mission/store"
)

func queryCommand() *cli.Command {
	return &cli.Command{
		Name:      "query",
		Usage:     "print stored flows as JSON lines (filter: a MongoDB query document)",
		ArgsUsage: "[FILTER JSON]",
		Flags: flags(logFlagsAt("warn"), storeFlags(), rangeFlags(), []cli.Flag{
			&cli.IntFlag{Name: "limit", Value: 20, Usage: "most documents printed (0: all)"},
			&cli.BoolFlag{Name: "count", Usage: "print only the number of matching documents"},
			&cli.StringFlag{Name: "count-by", Usage: "print the number of matching documents per value of this field"},
		}),
		Action: func(c *cli.Context) error {
			log, err := newLogger(c)
			if err != nil {
				return err
			}
			filter := bson.D{}
			if c.NArg() > 0 {
				if err := bson.UnmarshalExtJSON([]byte(c.Args().First()), false, &filter); err != nil {
					return fmt.Errorf("filter %q is not a JSON query document: %w", c.Args().First(), err)
				}
			}
			if from, to := timeRange(c); !from.IsZero() || !to.IsZero() {
				filter = bson.D{{Key: "$and", Value: bson.A{filter, startRange(from, to)}}}
			}
			coll, done, err := connectStore(c, log)
			if err != nil {
				return err
			}
			defer done()
			ctx := c.Context
			out := bufio.NewWriter(c.App.Writer)
			defer out.Flush()
			switch {
			case c.Bool("count"):
				n, err := coll.CountDocuments(ctx, filter)
				if err != nil {
					return fmt.Errorf("count: %w", err)
				}
				fmt.Fprintln(out, n)
				return nil
			case c.String("count-by") != "":
				cur, err := coll.Aggregate(ctx, mongo.Pipeline{
					{{Key: "$match", Value: filter}},
					{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$" + c.String("count-by")}, {Key: "count", Value: bson.D{{Key: "$sum", Value: 1}}}}}},
					{{Key: "$sort", Value: bson.D{{Key: "count", Value: -1}}}},
				})
				if err != nil {
					return fmt.Errorf("aggregate: %w", err)
				}
				return printCursor(ctx, cur, out)
			}
			opts := options.Find().SetSort(bson.D{{Key: "flowStartNanoseconds", Value: 1}})
			if l := c.Int("limit"); l > 0 {
				opts.SetLimit(int64(l))
			}
			cur, err := coll.Find(ctx, filter, opts)
			if err != nil {
				return fmt.Errorf("find: %w", err)
			}
			return printCursor(ctx, cur, out)
		},
	}
}

// connectStore opens the flow collection the flags name.
func connectStore(c *cli.Context, log zerolog.Logger) (*mongo.Collection, func(), error) {
	url := c.String(flagMongoURL)
	var closers []func()
	done := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	if url == "" {
		dir := filepath.Join(c.String(flagDataDir), "db")
		if _, err := os.Stat(dir); err != nil {
			return nil, nil, fmt.Errorf("no embedded database in %s (run mission collect or all-in-one first, or give --%s)", c.String(flagDataDir), flagMongoURL)
		}
		emb, err := store.StartEmbedded(dir, "127.0.0.1:0", log)
		if err != nil {
			return nil, nil, storeError(err)
		}
		closers = append(closers, func() { emb.Close() })
		url = emb.URL()
	}
	ctx, cancel := context.WithTimeout(c.Context, time.Minute)
	defer cancel()
	client, err := mongo.Connect(ctx, options.Client().ApplyURI(url))
	if err != nil {
		done()
		return nil, nil, fmt.Errorf("connect to %s: %w", redactURL(url), err)
	}
	closers = append(closers, func() { client.Disconnect(context.Background()) })
	return client.Database(c.String(flagMongoCollection)).Collection(c.String(flagCollection)), done, nil
}

func printCursor(ctx context.Context, cur *mongo.Cursor, out io.Writer) error {
	defer cur.Close(ctx)
	for cur.Next(ctx) {
		js, err := bson.MarshalExtJSON(cur.Current, false, false)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%s\n", js)
	}
	return cur.Err()
}

// startRange selects flows starting in [from, to) (a zero end is open):
// on the indexed BSON date, widened to whole milliseconds because BSON
// dates stop there, and exactly on the nanosecond twin.
func startRange(from, to time.Time) bson.D {
	date, ns := bson.D{}, bson.D{}
	if !from.IsZero() {
		date = append(date, bson.E{Key: "$gte", Value: from.Truncate(time.Millisecond)})
		ns = append(ns, bson.E{Key: "$gte", Value: from.UnixNano()})
	}
	if !to.IsZero() {
		date = append(date, bson.E{Key: "$lt", Value: to.Truncate(time.Millisecond).Add(time.Millisecond)})
		ns = append(ns, bson.E{Key: "$lt", Value: to.UnixNano()})
	}
	if len(date) == 0 {
		return bson.D{}
	}
	return bson.D{{Key: "flowStartNanoseconds", Value: date}, {Key: "flowStartNs", Value: ns}}
}
