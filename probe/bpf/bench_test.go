package bpf

import "testing"

// BenchmarkMatch: a typical probe filter on an MQTT CONNECT over IPv4 TCP.
func BenchmarkMatch(b *testing.B) {
	p, err := Compile("tcp port 1883 or tcp port 8883 and not host 10.9.9.9", LinkTypeEthernet, 0)
	if err != nil {
		b.Fatal(err)
	}
	pkt := frames(b, LinkTypeEthernet)[2].data // v4 tcp mqtt connect
	if !p.Match(pkt) {
		b.Fatal("filter does not match the benchmark packet")
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		if !p.Match(pkt) {
			b.Fatal("no match")
		}
	}
}

func BenchmarkCompile(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile("tcp port 1883 and not host 10.0.0.1 or tcp[tcpflags] & (tcp-syn|tcp-fin) != 0", LinkTypeEthernet, 0); err != nil {
			b.Fatal(err)
		}
	}
}
