package command

import (
	"encoding/json"

	"github.com/urfave/cli/v2"

	"github.com/mission-ids/mission/mining"
)

func detectCommand() *cli.Command {
	return &cli.Command{
		Name:  "detect",
		Usage: "check stored flows (or a flow file) against a model; print alerts as JSON lines",
		Flags: flags(logFlags(), sourceFlags(), storeFlags(), rangeFlags(), enterpriseFlag(), []cli.Flag{
			&cli.StringFlag{Name: flagModel, Required: true, EnvVars: []string{"MODEL"}, Usage: "model file from mission mine"},
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
			recs, err := loadFlows(c, log)
			if err != nil {
				return err
			}
			det := mining.NewDetector(m, mining.DetectorOptions{})
			out := json.NewEncoder(c.App.Writer)
			n := 0
			emit := func(alerts []mining.Alert) error {
				for i := range alerts {
					n++
					if err := out.Encode(&alerts[i]); err != nil {
						return err
					}
				}
				return nil
			}
			for i := range recs {
				if err := emit(det.Observe(&recs[i])); err != nil {
					return err
				}
				if i%256 == 0 {
					if err := emit(det.Advance(recs[i].Start)); err != nil {
						return err
					}
				}
			}
			if err := emit(det.Flush()); err != nil {
				return err
			}
			log.Info().Int("flows", len(recs)).Int("alerts", n).Msg("detection done")
			return nil
		},
	}
}
