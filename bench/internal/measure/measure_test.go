package measure

import (
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	xs := []time.Duration{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	for q, want := range map[float64]time.Duration{0.1: 1, 0.5: 5, 0.95: 10, 1: 10, 0.01: 1} {
		if got := Percentile(xs, q); got != want {
			t.Errorf("q %v: %v, want %v", q, got, want)
		}
	}
	if xs[0] != 5 {
		t.Fatal("Percentile sorted its input")
	}
	if Percentile(nil, 0.5) != 0 {
		t.Fatal("empty input")
	}
}

func TestDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		395 * time.Microsecond: "395 µs", 2620 * time.Microsecond: "2.62 ms", 1500 * time.Millisecond: "1.50 s",
	} {
		if got := Duration(d); got != want {
			t.Errorf("%v: %q, want %q", d, got, want)
		}
	}
}
