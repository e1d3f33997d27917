package command

import (
	"encoding/json"
	"errors"

	"github.com/urfave/cli/v2"

	"github.com/mission-ids/mission/mining"
)

const flagIncidents = "incidents"

func detectCommand() *cli.Command {
	return &cli.Command{
		Name:  "detect",
		Usage: "check stored flows (or a flow file) against a model; print alerts (or incidents) as JSON lines",
		Flags: flags(logFlags(), sourceFlags(), storeFlags(), rangeFlags(), enterpriseFlag(), eveFlag(), benignFlag(), namesFlag(), []cli.Flag{
			&cli.StringFlag{Name: flagModel, Required: true, EnvVars: []string{"MODEL"}, Usage: "model file from mission mine"},
			&cli.BoolFlag{Name: flagIncidents, EnvVars: []string{"INCIDENTS"}, Usage: "print incidents (alerts grouped by cause) instead of alerts, each once it is closed"},
		}),
		Action: func(c *cli.Context) error {
			log, err := newLogger(c)
			if err != nil {
				return err
			}
			m, err := readModel(c.String(flagModel))
			if err != nil {
				return err
			}
			opts, err := namedDetectorOptions(c, m, log)
			if err != nil {
				return err
			}
			recs, err := loadFlows(c, log)
			if err != nil {
				return err
			}
			eve, err := openEVE(c, log)
			if err != nil {
				return err
			}
			out := json.NewEncoder(c.App.Writer)
			out.SetEscapeHTML(false)
			incidents := c.Bool(flagIncidents)
			var nAlerts, nIncidents int
			var errs []error
			keep := func(err error) {
				if err != nil && len(errs) < 10 {
					errs = append(errs, err)
				}
			}
			h := mining.Handler{
				Alert: func(a *mining.Alert) {
					nAlerts++
					if eve != nil {
						keep(eve.Alert(a))
					}
					if !incidents {
						keep(out.Encode(a))
					}
				},
				Incident: func(inc *mining.Incident, ch mining.IncidentChange) {
					if ch == mining.IncidentClosed {
						nIncidents++
						if incidents {
							keep(out.Encode(inc))
						}
					}
				},
			}
			// The same detection as collect and all-in-one --model run
			// (mining.Stream on flow time), so the same flows raise the
			// same alerts and incidents.
			st := mining.NewStream(m, mining.StreamOptions{Detector: opts}, h)
			for i := range recs {
				if eve != nil && recs[i].Anomalies != 0 {
					keep(eve.Anomalies(&recs[i]))
				}
				st.Observe(&recs[i])
			}
			st.Flush()
			if eve != nil {
				keep(eve.Close())
			}
			if err := errors.Join(errs...); err != nil {
				return err
			}
			log.Info().Int("flows", len(recs)).Int("alerts", nAlerts).Int("incidents", nIncidents).Msg("detection done")
			return nil
		},
	}
}
