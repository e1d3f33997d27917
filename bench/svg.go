package main

// A small SVG line-chart helper: one or two y axes, linear or log scales.

import (
	"fmt"
	"html"
	"math"
	"strings"
)

type series struct {
	Name  string
	X, Y  []float64
	Color string
	Dash  bool
	Right bool // plotted against the right axis
}

type chart struct {
	Title             string
	XLabel            string
	YLabel, Y2Label   string
	LogX, LogY, LogY2 bool
	Series            []series
	Notes             []string // lines under the title
}

const (
	cw, ch                 = 760, 440
	padL, padR, padT, padB = 80, 80, 70, 60
)

type axis struct {
	lo, hi float64
	log    bool
}

func (a axis) pos(v float64, from, to float64) float64 {
	if a.log {
		v, lo, hi := math.Log10(math.Max(v, 1e-9)), math.Log10(a.lo), math.Log10(a.hi)
		return from + (v-lo)/(hi-lo)*(to-from)
	}
	return from + (v-a.lo)/(a.hi-a.lo)*(to-from)
}

func (a axis) ticks() []float64 {
	var t []float64
	if a.log {
		for e := math.Floor(math.Log10(a.lo)); e <= math.Ceil(math.Log10(a.hi)); e++ {
			for _, m := range []float64{1, 2, 5} {
				v := m * math.Pow(10, e)
				if v >= a.lo*0.999 && v <= a.hi*1.001 {
					t = append(t, v)
				}
			}
		}
		return t
	}
	step := niceStep((a.hi - a.lo) / 5)
	for v := math.Ceil(a.lo/step) * step; v <= a.hi*1.0001; v += step {
		t = append(t, v)
	}
	return t
}

func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	e := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*e >= raw {
			return m * e
		}
	}
	return 10 * e
}

func makeAxis(vals []float64, log bool) axis {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range vals {
		if math.IsNaN(v) || math.IsInf(v, 0) || log && v <= 0 {
			continue
		}
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	if math.IsInf(lo, 1) {
		lo, hi = 1, 10
	}
	if log {
		lo = math.Pow(10, math.Floor(math.Log10(lo)))
		hi = math.Pow(10, math.Ceil(math.Log10(hi)))
		if hi <= lo {
			hi = lo * 10
		}
		return axis{lo, hi, true}
	}
	lo = math.Min(lo, 0)
	if hi <= lo {
		hi = lo + 1
	}
	step := niceStep((hi - lo) / 5)
	return axis{lo, math.Ceil(hi/step) * step, false}
}

func fmtTick(v float64) string {
	switch {
	case v == 0:
		return "0"
	case math.Abs(v) >= 1e6:
		return trimZero(fmt.Sprintf("%.1f", v/1e6)) + "M"
	case math.Abs(v) >= 1e3:
		return trimZero(fmt.Sprintf("%.1f", v/1e3)) + "k"
	case math.Abs(v) >= 1:
		return trimZero(fmt.Sprintf("%.1f", v))
	default:
		return trimZero(fmt.Sprintf("%.3f", v))
	}
}

func trimZero(s string) string {
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// svg renders the chart as a standalone SVG document.
func (c chart) svg() string {
	var xs, yl, yr []float64
	hasRight := false
	for _, s := range c.Series {
		xs = append(xs, s.X...)
		if s.Right {
			yr = append(yr, s.Y...)
			hasRight = true
		} else {
			yl = append(yl, s.Y...)
		}
	}
	ax, ayl, ayr := makeAxis(xs, c.LogX), makeAxis(yl, c.LogY), makeAxis(yr, c.LogY2)
	x0, x1 := float64(padL), float64(cw-padR)
	y0, y1 := float64(ch-padB), float64(padT)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", cw, ch, cw, ch)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", cw, ch)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", padL, esc(c.Title))
	for i, n := range c.Notes {
		fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#555">%s</text>`+"\n", padL, 40+14*i, esc(n))
	}
	// grid and ticks
	for _, t := range ax.ticks() {
		x := ax.pos(t, x0, x1)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e5e5e5"/>`+"\n", x, y0, x, y1)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x, y0+16, fmtTick(t))
	}
	for _, t := range ayl.ticks() {
		y := ayl.pos(t, y0, y1)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e5e5e5"/>`+"\n", x0, y, x1, y)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", x0-6, y+4, fmtTick(t))
	}
	if hasRight {
		for _, t := range ayr.ticks() {
			y := ayr.pos(t, y0, y1)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", x1+6, y+4, fmtTick(t))
		}
	}
	fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#333"/>`+"\n", x0, y1, x1-x0, y0-y1)
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", (x0+x1)/2, ch-18, esc(c.XLabel))
	fmt.Fprintf(&b, `<text transform="translate(18 %.1f) rotate(-90)" text-anchor="middle">%s</text>`+"\n", (y0+y1)/2, esc(c.YLabel))
	if hasRight {
		fmt.Fprintf(&b, `<text transform="translate(%d %.1f) rotate(90)" text-anchor="middle">%s</text>`+"\n", cw-14, (y0+y1)/2, esc(c.Y2Label))
	}
	// series
	for i, s := range c.Series {
		a := ayl
		if s.Right {
			a = ayr
		}
		var pts []string
		for k := range s.X {
			if k >= len(s.Y) || math.IsNaN(s.Y[k]) || (a.log && s.Y[k] <= 0) {
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", ax.pos(s.X[k], x0, x1), a.pos(s.Y[k], y0, y1)))
		}
		dash := ""
		if s.Dash {
			dash = ` stroke-dasharray="6 4"`
		}
		if len(pts) > 0 {
			fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>`+"\n", strings.Join(pts, " "), s.Color, dash)
			for _, p := range pts {
				xy := strings.Split(p, ",")
				fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="3" fill="%s"/>`+"\n", xy[0], xy[1], s.Color)
			}
		}
		// legend
		lx, ly := x0+10+float64(i%2)*260, y1+16+float64(i/2)*16
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"%s/>`+"\n", lx, ly-4, lx+22, ly-4, s.Color, dash)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", lx+28, ly, esc(s.Name))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func esc(s string) string { return html.EscapeString(s) }
