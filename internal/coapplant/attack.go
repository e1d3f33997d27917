package coapplant

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/mission-ids/mission/coapparse"
)

// AttackConfig configures Plant.Attack.
type AttackConfig struct {
	// Name names the attacker in the report (default "intruder"); it is in
	// no names file.
	Name string
	// Host is the attacker's address in 127.0.2.0/24 (default 66:
	// 127.0.2.66), outside the plant's network.
	Host byte
	// Rounds: in each, the attacker PUTs and then DELETEs every actuator
	// (default 3).
	Rounds int
	// Over spreads the requests evenly over this long (default 1 s).
	Over time.Duration
}

// AttackReport is what the attacker did.
type AttackReport struct {
	Device    Device
	Start     time.Time
	End       time.Time
	Exchanges []Exchange
}

// Attack runs an unknown client against the server: from an address no
// device uses, it turns every actuator on (PUT) and tries to remove it
// (DELETE, answered 4.05). Its exchanges are in the plant's report too.
func (p *Plant) Attack(ctx context.Context, cfg AttackConfig) (AttackReport, error) {
	if cfg.Name == "" {
		cfg.Name = "intruder"
	}
	if cfg.Host == 0 {
		cfg.Host = 66
	}
	if cfg.Rounds <= 0 {
		cfg.Rounds = 3
	}
	if cfg.Over <= 0 {
		cfg.Over = time.Second
	}
	addr := netip.AddrFrom4([4]byte{127, 0, 2, cfg.Host})
	ep, err := listen(netip.AddrPortFrom(addr, 0), p.cfg.Timing, p.rng(uint64(1000+int(cfg.Host))), refuse, nil)
	if err != nil {
		return AttackReport{}, fmt.Errorf("coapplant: attacker: %w", err)
	}
	ep.start()
	dev := Device{cfg.Name, RoleAttacker, addr}
	p.mu.Lock()
	p.devices = append(p.devices, dev)
	p.mu.Unlock()
	rep := AttackReport{Device: dev, Start: time.Now()}
	n := cfg.Rounds * len(p.cfg.Actuators) * 2
	gap := cfg.Over / time.Duration(n)
	var errs []error
	for r := range cfg.Rounds {
		for _, a := range p.cfg.Actuators {
			for _, method := range []coapparse.Code{coapparse.PUT, coapparse.DELETE} {
				if ctx.Err() != nil {
					break
				}
				var payload []byte
				if method == coapparse.PUT {
					payload = []byte(`{"on":true}`)
				}
				x, err := p.send(ep, cfg.Name, request{method: method, path: "/actuators/" + a, payload: payload, observe: -1})
				rep.Exchanges = append(rep.Exchanges, x)
				errs = append(errs, err)
				if r < cfg.Rounds-1 || a != p.cfg.Actuators[len(p.cfg.Actuators)-1] || method != coapparse.DELETE {
					select {
					case <-ctx.Done():
					case <-time.After(gap):
					}
				}
			}
		}
	}
	rep.End = time.Now()
	errs = append(errs, ep.close(), ctx.Err())
	return rep, errors.Join(errs...)
}
