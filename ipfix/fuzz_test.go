package ipfix

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fuzzSeeds are valid and nearly valid messages: every fixture and
// regression input of the package.
func fuzzSeeds(t testing.TB) [][]byte {
	tm := mqttTemplate(t, nil, 256)
	flows := []mqttFlow{sampleFlow(1), sampleFlow(2)}
	flows[1].Topic = strings.Repeat("long/", 60)
	built := buildMessages(t, BuilderConfig{Transport: TCP}, tm, flows)
	opt := set(3, 0x01, 0x01, 0x00, 0x02, 0x00, 0x01, 0x00, 0x90, 0x00, 0x04, 0x00, 0x29, 0x00, 0x08)
	list := set(2, 0x01, 0x02, 0x00, 0x01, 0x80, 0x0d, 0xff, 0xff, 0x00, 0x00, 0x27, 0x0f) // mqttTopicFilters
	listData := append([]byte{0x0e, 0x03, 0x80, 0x12, 0xff, 0xff, 0x00, 0x00, 0x27, 0x0f, 0x03, 'a', '/', '#'}, 0x00)
	return [][]byte{
		fixtureTemplateAndData,
		originalPrototypeMessage(),
		built[0],
		msg(0, 0, tmpl256, data256),
		msg(0, 0, set(2, 0x01, 0x00, 0x00, 0x00), data256),
		msg(0, 0, set(2, 0x01, 0x00, 0x00, 0x01, 0x00, 0x08, 0x00, 0x00), set(256, 1)),
		msg(0, 0, set(2, 0x00, 0x02, 0x00, 0x00), set(3, 0x00, 0x03, 0x00, 0x00)),
		msg(0, 0, opt, set(257, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2)),
		msg(0, 0, list, set(258, listData...)),
		msg(0, 0, data256, tmpl256),
	}
}

// FuzzDecode feeds arbitrary bytes to a session (twice, so the second pass
// sees the templates of the first) and materialises every record. It must
// never panic and never deliver a record outside the message.
func FuzzDecode(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// A tight budget shared by both sessions, so that evictions run.
		b := NewBudget(Limits{MaxSessions: 2, MaxTemplates: 8, MaxTemplateFields: 96, MaxPendingBytes: 3000})
		var sessions []*Session
		for _, tr := range []Transport{UDP, TCP} {
			s := NewSession(Config{MaxTemplates: 16, MaxFieldsPerTemplate: 64, MaxBufferedBytes: 4096, Budget: b}, SessionKey{Transport: tr})
			sessions = append(sessions, s)
			for range 2 {
				_ = s.Decode(data, func(r Record) error {
					if len(r.Raw()) > len(data) {
						t.Fatalf("record of %d bytes from %d input bytes", len(r.Raw()), len(data))
					}
					_ = r.Map()
					for i := range r.NumFields() {
						v := r.Value(i)
						_, _, _, _, _ = v.Uint(), v.Int(), v.Float(), v.Time(), v.IP()
						if l, err := v.BasicList(); err == nil {
							_ = l.Strings()
						}
					}
					return nil
				})
			}
		}
		lim := b.Limits()
		if u := b.Usage(); u.Sessions > lim.MaxSessions || u.Templates > lim.MaxTemplates ||
			u.Fields > lim.MaxTemplateFields || u.PendingBytes > lim.MaxPendingBytes {
			t.Fatalf("usage %+v over limits %+v", u, lim)
		}
		for _, s := range sessions {
			s.Close()
		}
		if u := b.Usage(); u != (Usage{}) {
			t.Fatalf("usage %+v after Close", u)
		}
		fr := NewFileReader(bytes.NewReader(data))
		for range 100 {
			if _, err := fr.Next(); err != nil {
				break
			}
		}
	})
}

func basicListSeeds() [][]byte {
	return [][]byte{
		{3, 0, 8, 0, 4, 1, 2, 3, 4}, // allOf, sourceIPv4Address, 4 bytes each, one item
		AppendBasicListStrings(nil, SemanticAllOf, DefaultMQTTPEN, MQTTTopicFilter, []string{"a/#", strings.Repeat("b", 300)}),
		AppendBasicListStrings(nil, SemanticOrdered, 0, 82, nil),
	}
}

// FuzzParseBasicList checks the RFC 6313 list parser alone.
func FuzzParseBasicList(f *testing.F) {
	for _, s := range basicListSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := ParseBasicList(data)
		if err != nil {
			return
		}
		_ = l.Strings()
		_, _ = l.Values()
	})
}

// TestWriteFuzzCorpus regenerates testdata/fuzz/<FuzzName> from the seeds
// when IPFIX_WRITE_CORPUS=1.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("IPFIX_WRITE_CORPUS") != "1" {
		return
	}
	for name, seeds := range map[string][][]byte{"FuzzDecode": fuzzSeeds(t), "FuzzParseBasicList": basicListSeeds()} {
		dir := filepath.Join("testdata", "fuzz", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, s := range seeds {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed%02d", i)), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
