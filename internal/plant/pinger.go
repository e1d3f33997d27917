package plant

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho/log"
)

// pinger keeps a connection alive as MQTT asks (MQTT-3.1.2-20): a PINGREQ
// only when the client sent nothing for the keep-alive interval. paho's
// DefaultPinger also sends one right after CONNACK, which would add a
// PINGREQ per client to every capture; the study's clients did not.
type pinger struct {
	mu       sync.Mutex
	lastSent time.Time
	lastResp time.Time
	pings    int
}

func (p *pinger) Run(ctx context.Context, conn net.Conn, keepAlive uint16) error {
	if keepAlive == 0 {
		return nil
	}
	interval := time.Duration(keepAlive) * time.Second
	p.PacketSent() // the CONNECT
	var pingSent time.Time
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			p.mu.Lock()
			due, resp := p.lastSent.Add(interval), p.lastResp
			p.mu.Unlock()
			if !pingSent.IsZero() && resp.Before(pingSent) {
				return errors.New("no PINGRESP within the keep-alive interval")
			}
			if now.Before(due) {
				t.Reset(due.Sub(now))
				continue
			}
			pingSent = time.Now()
			if _, err := packets.NewControlPacket(packets.PINGREQ).WriteTo(conn); err != nil {
				return fmt.Errorf("send PINGREQ: %w", err)
			}
			p.mu.Lock()
			p.pings++
			p.lastSent = pingSent
			p.mu.Unlock()
			t.Reset(interval)
		}
	}
}

func (p *pinger) PacketSent() {
	p.mu.Lock()
	p.lastSent = time.Now()
	p.mu.Unlock()
}

func (p *pinger) PacketReceived() {}

func (p *pinger) PingResp() {
	p.mu.Lock()
	p.lastResp = time.Now()
	p.mu.Unlock()
}

func (p *pinger) SetDebug(log.Logger) {}

func (p *pinger) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pings
}
