package command

import (
	"bufio"
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"
	"go.mongodb.org/mongo-driver/bson"

	"github.com/mission-ids/mission/store"
)

var errUnknownProtocol = errors.New("unknown application protocol")

func queryCommand() *cli.Command {
	return &cli.Command{
		Name:      "query",
		Usage:     "print stored flows as JSON lines (filter: a MongoDB query document)",
		ArgsUsage: "[FILTER JSON]",
		Flags: flags(logFlagsAt("warn"), storeFlags(), rangeFlags(), []cli.Flag{
			&cli.IntFlag{Name: "limit", Value: 20, Usage: "most documents printed (0: all)"},
			&cli.BoolFlag{Name: "count", Usage: "print only the number of matching documents"},
			&cli.StringFlag{Name: "count-by", Usage: "print the number of matching documents per value of this field"},
			&cli.StringFlag{Name: "protocol", Usage: "only flows of this application protocol (mqtt, coap)"},
		}),
		Action: func(c *cli.Context) error {
			log, err := newLogger(c)
			if err != nil {
				return err
			}
			q := store.Query{Limit: int64(c.Int("limit")), Protocol: c.String("protocol")}
			switch q.Protocol {
			case "", "mqtt", "coap":
			default:
				return fmt.Errorf("--protocol %q: %w (mqtt or coap)", q.Protocol, errUnknownProtocol)
			}
			q.From, q.To = timeRange(c)
			if c.NArg() > 0 {
				if q.Filter, err = store.ParseFilter(c.Args().First()); err != nil {
					return err
				}
			}
			rd, err := openReader(c, log)
			if err != nil {
				return err
			}
			defer rd.Close()
			out := bufio.NewWriter(c.App.Writer)
			defer out.Flush()
			switch {
			case c.Bool("count"):
				n, err := rd.Count(c.Context, q)
				if err != nil {
					return err
				}
				fmt.Fprintln(out, n)
				return nil
			case c.String("count-by") != "":
				counts, err := rd.CountBy(c.Context, q, c.String("count-by"))
				if err != nil {
					return err
				}
				for _, fc := range counts {
					js, err := bson.MarshalExtJSON(bson.D{{Key: "_id", Value: fc.Value}, {Key: "count", Value: fc.Count}}, false, false)
					if err != nil {
						return err
					}
					fmt.Fprintf(out, "%s\n", js)
				}
				return nil
			}
			return rd.Find(c.Context, q, func(doc bson.Raw) error {
				js, err := bson.MarshalExtJSON(doc, false, false)
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(out, "%s\n", js)
				return err
			})
		},
	}
}
