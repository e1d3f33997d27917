package plant_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mission-ids/mission/internal/mqtttest"
	"github.com/mission-ids/mission/internal/plant"
)

// TestPlantOnMosquitto runs the study's plant on a real mosquitto and checks
// the report: every chain completed, every message where the routing says.
func TestPlantOnMosquitto(t *testing.T) {
	for _, watch := range []bool{false, true} {
		t.Run(fmt.Sprintf("watchStates=%v", watch), func(t *testing.T) {
			b := mqtttest.StartBroker(t, mqtttest.BrokerOptions{Address: "127.0.0.1"})
			cfg := plant.DefaultConfig(fmt.Sprintf("127.0.0.1:%d", b.Port))
			cfg.Rounds, cfg.Interval, cfg.WatchStates = 3, 100*time.Millisecond, watch
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			rep, err := plant.Run(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			n := len(cfg.Sensors)
			if rep.Rounds != 3 || len(rep.Chains) != 3*n {
				t.Fatalf("rounds %d, chains %d; want 3, %d", rep.Rounds, len(rep.Chains), 3*n)
			}
			perChainPub, perChainDel := 3, 2
			if watch {
				perChainDel = 3
			}
			if len(rep.Published) != perChainPub*3*n || len(rep.Delivered) != perChainDel*3*n {
				t.Fatalf("published %d, delivered %d; want %d, %d", len(rep.Published), len(rep.Delivered), perChainPub*3*n, perChainDel*3*n)
			}
			if len(rep.Clients) != 2*n+1 {
				t.Fatalf("%d clients", len(rep.Clients))
			}
			for _, c := range rep.Clients {
				if !c.Disconnected || c.Err != nil || c.Pings != 0 {
					t.Errorf("client %s: disconnected %v, error %v, %d pings", c.ID, c.Disconnected, c.Err, c.Pings)
				}
			}
			for _, ch := range rep.Chains {
				want := map[string]bool{
					"P " + ch.Sensor.ClientID + " " + ch.Sensor.Topic:           true,
					"D " + ch.Controller + " " + ch.Sensor.Topic:                true,
					"P " + ch.Controller + " " + ch.Actuator.ToggleTopic:        true,
					"D " + ch.Actuator.ClientID + " " + ch.Actuator.ToggleTopic: true,
					"P " + ch.Actuator.ClientID + " " + ch.Actuator.StateTopic:  true,
				}
				if watch {
					want["D "+ch.Controller+" "+ch.Actuator.StateTopic] = true
				}
				got := map[string]bool{}
				for kind, ms := range map[string][]plant.Message{"P": rep.Published, "D": rep.Delivered} {
					for _, m := range ms {
						if string(m.CorrelationData) == string(ch.CorrelationData) {
							k := kind + " " + m.ClientID + " " + m.Topic
							if got[k] {
								t.Errorf("chain %s: %s twice", ch.CorrelationData, k)
							}
							got[k] = true
							if m.QoS != 2 {
								t.Errorf("chain %s: %s at QoS %d", ch.CorrelationData, k, m.QoS)
							}
						}
					}
				}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("chain %s:\n got %v\nwant %v", ch.CorrelationData, got, want)
				}
			}
		})
	}
}

// TestPlantKeepAlive: with a 1 s keep alive, idle clients ping (and the
// broker, which drops a client silent for 1.5 s, keeps them all).
func TestPlantKeepAlive(t *testing.T) {
	b := mqtttest.StartBroker(t, mqtttest.BrokerOptions{Address: "127.0.0.1"})
	cfg := plant.DefaultConfig(fmt.Sprintf("127.0.0.1:%d", b.Port))
	cfg.Rounds, cfg.Interval, cfg.KeepAlive = 1, 50*time.Millisecond, 1
	ctx := context.Background()
	p, err := plant.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond)
	rep, err := p.Stop(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rep.Clients {
		if c.Pings < 1 || c.Pings > 3 || !c.Disconnected || c.Err != nil {
			t.Errorf("client %s: %d pings in 2.5 s idle, disconnected %v, error %v", c.ID, c.Pings, c.Disconnected, c.Err)
		}
	}
}
