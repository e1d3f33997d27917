package collector

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/ipfix"
)

// ReadFile stores the flows of an IPFIX file (RFC 5655).
func (c *Collector) ReadFile(ctx context.Context, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open IPFIX file: %w", err)
	}
	defer f.Close()
	return c.ReadIPFIX(ctx, f)
}

// ReadIPFIX stores the flows of an IPFIX message stream.
func (c *Collector) ReadIPFIX(ctx context.Context, r io.Reader) error {
	c.loadIdentities(ctx)
	return c.readIPFIX(ctx, r, c.newHandler())
}

// ReadRecords decodes the flows of an IPFIX message stream (an IPFIX file,
// RFC 5655) exactly as a collector with cfg stores them, and calls fn with
// each, in file order: MQTT flows (mqtt true) and third-party flows (mqtt
// false; their standard fields only), with times of exporters that count
// in system uptime resolved from their options records
// (systemInitTimeMilliseconds). Options records, and data records that are
// not valid flows, are not passed on. Only cfg.EnterpriseNumber, cfg.IPFIX,
// cfg.Limits and cfg.Logger (warnings) are used. Each call gets a new
// Record, which fn may keep. A malformed message stops reading with an
// error wrapping ipfix.ErrMalformed or ipfix.ErrIncomplete; data sets
// without a template are skipped, as by the collector. An error from fn
// stops reading and is returned as is.
func ReadRecords(ctx context.Context, r io.Reader, cfg Config, fn func(rec *flow.Record, mqtt bool) error) error {
	cfg.Flows = nil
	c := New(cfg, nil)
	h := c.newHandler()
	h.emit = fn
	err := c.readIPFIX(ctx, r, h)
	if h.emitErr != nil {
		return h.emitErr
	}
	return err
}

// readIPFIX decodes the messages of r in one file session with h.
func (c *Collector) readIPFIX(ctx context.Context, r io.Reader, h *handler) error {
	fr := ipfix.NewFileReader(r)
	var from netip.AddrPort // no exporter address for a file
	sess := ipfix.NewSession(c.cfg.IPFIX, ipfix.SessionKey{Exporter: from, Transport: ipfix.File})
	defer sess.Close()
	h.from = from
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		msg, err := fr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read IPFIX file: %w", err)
		}
		if err := h.message(sess, msg); err != nil {
			if h.emitErr != nil {
				return err
			}
			return fmt.Errorf("IPFIX file: %w", err)
		}
	}
}
