package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

func TestKeyed(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	k := New[string](1, 3, 4)
	for i := 0; i < 3; i++ {
		if !k.Allow("a", now) {
			t.Fatalf("event %d within the burst refused", i)
		}
	}
	if k.Allow("a", now) {
		t.Fatal("event beyond the burst allowed")
	}
	if !k.Allow("b", now) {
		t.Fatal("another key shares a's bucket")
	}
	if !k.Allow("a", now.Add(1100*time.Millisecond)) {
		t.Fatal("a did not refill at 1/s")
	}
	// Full buckets are forgotten on the next prune.
	later := now.Add(time.Minute)
	k.Allow("c", later)
	if n := k.Len(); n != 1 {
		t.Fatalf("after prune %d keys tracked, want 1", n)
	}
	// The set never exceeds max keys.
	for i := 0; i < 100; i++ {
		k.Allow(fmt.Sprint(i), later)
		if n := k.Len(); n > 4 {
			t.Fatalf("%d keys tracked with max 4", n)
		}
	}
}
