package ipfix

import (
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestIANATable checks the shape of the hand-transcribed IANA table: each
// row sits at its own id, names are unique camelCase identifiers,
// every type is one the codec knows, and the gaps are deprecated or
// reserved ids only (too many would mean lost rows).
func TestIANATable(t *testing.T) {
	name := regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]*$`) // IANA spells one VRFname
	seen := map[string]uint16{}
	gaps := 0
	for i, e := range ianaElements {
		if i == 0 {
			require.Zero(t, e.ID, "id 0 is reserved")
			continue
		}
		if e.Name == "" {
			gaps++
			continue
		}
		require.EqualValues(t, i, e.ID, "row %d holds id %d", i, e.ID)
		require.Zero(t, e.PEN, "%s: IANA elements have no enterprise number", e.Name)
		require.Regexp(t, name, e.Name)
		prev, dup := seen[e.Name]
		require.False(t, dup, "%s at ids %d and %d", e.Name, prev, i)
		seen[e.Name] = e.ID
		require.NotEqual(t, "unknown", e.Type.String(), "%s: type %d", e.Name, e.Type)
		require.Positive(t, e.Type.DefaultLength(), "%s: type %s has a wire length", e.Name, e.Type)
	}
	require.GreaterOrEqual(t, len(ianaElements)-1, 491, "elements 1–491")
	require.Less(t, gaps, 60, "deprecated and reserved ids only")
}
