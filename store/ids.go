package store

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"net/netip"

	"github.com/mission-ids/mission/flow"
)

// DocumentID returns the _id the store gives a document that has none.
//
// When the exporter numbered the flow (FlowID != 0) the id is deterministic:
// the lowercase hex of the first 128 bits of SHA-256 over the exporter's IP
// address (its port is ignored: an exporter reconnecting from another port
// is the same exporter), the observation domain and the flow id. A flow
// exported, received or written twice therefore maps to one document, and a
// retried insert meets a duplicate-key error instead of storing a copy.
//
// Otherwise the id is 128 random bits in hex, drawn once when the document is
// queued, so that the store's own retries are still idempotent.
func DocumentID(d *flow.Document) string {
	if d.FlowID == 0 {
		return randomID()
	}
	var addr [16]byte
	if ap, err := netip.ParseAddrPort(d.ExporterAddress); err == nil {
		addr = ap.Addr().Unmap().As16()
	} else if a, err := netip.ParseAddr(d.ExporterAddress); err == nil {
		addr = a.Unmap().As16()
	}
	var buf [16 + 4 + 8]byte
	copy(buf[:16], addr[:])
	binary.BigEndian.PutUint32(buf[16:20], d.ObservationDomainID)
	binary.BigEndian.PutUint64(buf[20:28], d.FlowID)
	sum := sha256.Sum256(buf[:])
	return hex.EncodeToString(sum[:16])
}

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error (Go ≥ 1.24)
	return hex.EncodeToString(b[:])
}
