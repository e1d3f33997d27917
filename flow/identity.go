package flow

import (
	"net/netip"
	"time"
)

// Identity is what a CONNECT told about one MQTT connection, as seen by
// one exporter in one observation domain: the collector keeps these so
// that flows arriving without a client id (a probe started after the
// CONNECT) get it back.
type Identity struct {
	Exporter netip.Addr     // the probe's address
	Domain   uint32         // its observation domain
	Client   netip.AddrPort // the client's end of the connection
	Broker   netip.AddrPort // the broker's end

	ClientID string
	Username string
	Version  uint8     // MQTT protocol version; 0 if unknown
	Seen     time.Time // capture time of the CONNECT
}

// Key is the identity's connection key as text (exporter, domain, client
// and broker ends), unique per connection; the store uses it as _id.
func (id Identity) Key() string {
	b := make([]byte, 0, 96)
	b = id.Exporter.AppendTo(b)
	b = append(b, '|')
	b = appendUint(b, uint64(id.Domain))
	b = append(b, '|')
	b = id.Client.AppendTo(b)
	b = append(b, '|')
	b = id.Broker.AppendTo(b)
	return string(b)
}

func appendUint(b []byte, v uint64) []byte {
	var tmp [20]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return append(b, tmp[i:]...)
}

// ClientSide says which end of r is the client: the end whose id is not
// the broker's label. It returns the client and broker ends and a pointer
// to the client's id field.
func (r *Record) ClientSide() (client, broker netip.AddrPort, id *string) {
	src, dst := netip.AddrPortFrom(r.SrcAddr, r.SrcPort), netip.AddrPortFrom(r.DstAddr, r.DstPort)
	if r.SrcClientID == BrokerClientID {
		return dst, src, &r.DstClientID
	}
	return src, dst, &r.SrcClientID
}
