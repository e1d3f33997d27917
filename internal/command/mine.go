package command

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"github.com/mission-ids/mission/mining"
)

func mineCommand() *cli.Command {
	return &cli.Command{
		Name:  "mine",
		Usage: "build the event log of stored flows, export it (XES, CSV), discover the process (DFG) and learn a detection model",
		Flags: flags(logFlags(), sourceFlags(), storeFlags(), rangeFlags(), enterpriseFlag(), namesFlag(), []cli.Flag{
			&cli.StringFlag{Name: "out", Value: "mission-mine", Usage: "output directory"},
			&cli.Float64Flag{Name: "test-fraction", Value: 0.3, Usage: "share of the log (latest cases) held out to measure model quality"},
			&cli.IntFlag{Name: "min-edge", Usage: "drop directly-follows edges seen fewer times (graph only)"},
			&cli.IntFlag{Name: "min-activity", Usage: "drop activities seen fewer times (graph only)"},
			&cli.StringSliceFlag{Name: "activity", Usage: "keep only these activities in the graph (\"client → topic\"; repeat the flag)"},
			&cli.Float64Flag{Name: "noise", Usage: "share of cases allowed to violate a kept skeleton relation"},
		}),
		Action: func(c *cli.Context) error {
			log, err := newLogger(c)
			if err != nil {
				return err
			}
			names, err := readNames(c)
			if err != nil {
				return err
			}
			recs, err := loadFlows(c, log)
			if err != nil {
				return err
			}
			el := mining.NewEventLog(recs, names)
			opts := mining.LearnOptions{Noise: c.Float64("noise")}
			m, err := mining.Learn(el, opts)
			if errors.Is(err, mining.ErrEmptyLog) {
				return fmt.Errorf("no PUBLISH flow with a correlation id and no CoAP request among %d flows: nothing to mine", len(recs))
			}
			if err != nil {
				return err
			}
			out := c.String("out")
			if err := os.MkdirAll(out, 0o755); err != nil {
				return err
			}
			write := func(name string, fn func(io.Writer) error) error {
				f, err := os.Create(filepath.Join(out, name))
				if err != nil {
					return err
				}
				if err := fn(f); err != nil {
					f.Close()
					return fmt.Errorf("%s: %w", name, err)
				}
				return f.Close()
			}
			if err := write("events.xes", el.WriteXES); err != nil {
				return err
			}
			if err := write("events.csv", el.WriteCSV); err != nil {
				return err
			}
			g := mining.DiscoverDFG(el, mining.DFGOptions{MinEdgeCount: c.Int("min-edge"),
				MinActivityCount: c.Int("min-activity"), Activities: c.StringSlice("activity")})
			if err := write("dfg.dot", g.WriteDOT); err != nil {
				return err
			}
			rendered := renderDOT(filepath.Join(out, "dfg.dot"), log)
			var q *mining.Quality
			if tf := c.Float64("test-fraction"); tf > 0 && tf < 1 && len(el.Traces()) > 0 {
				train, test := el.SplitByTime(1 - tf)
				if m, err := mining.Learn(train, opts); err == nil {
					qq := mining.Evaluate(m, test)
					q = &qq
				}
			}
			if err := write("model.json", m.WriteJSON); err != nil {
				return err
			}
			report := map[string]any{"flows": len(recs), "cases": len(el.Traces()), "activities": len(m.Activities), "output": out,
				"files": append([]string{"events.xes", "events.csv", "dfg.dot", "model.json"}, rendered...)}
			if q != nil {
				report["heldOutQuality"] = q
				report["testFraction"] = c.Float64("test-fraction")
			}
			return printJSON(c, report)
		},
	}
}

// renderDOT draws the graph with Graphviz when it is installed.
func renderDOT(dot string, log zerolog.Logger) []string {
	bin, err := exec.LookPath("dot")
	if err != nil {
		log.Info().Msg("Graphviz (dot) not installed: dfg.dot not rendered to SVG/PNG (apt-get install graphviz)")
		return nil
	}
	var files []string
	for _, format := range []string{"svg", "png"} {
		outFile := strings.TrimSuffix(dot, ".dot") + "." + format
		if out, err := exec.Command(bin, "-T"+format, "-o", outFile, dot).CombinedOutput(); err != nil {
			log.Warn().Err(err).Str("output", string(out)).Msg("Graphviz failed")
			continue
		}
		files = append(files, filepath.Base(outFile))
	}
	return files
}
