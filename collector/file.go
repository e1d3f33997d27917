package collector

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"

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
	fr := ipfix.NewFileReader(r)
	var from netip.AddrPort // no exporter address for a file
	sess := ipfix.NewSession(c.cfg.IPFIX, ipfix.SessionKey{Exporter: from, Transport: ipfix.File})
	defer sess.Close()
	h := c.newHandler()
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
			return fmt.Errorf("IPFIX file: %w", err)
		}
	}
}
