package node

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzParseItem: /dht-put bodies never panic the parser, and whatever it
// accepts is a verified item that survives a round trip through the
// JSON /dht-get answers with.
func FuzzParseItem(f *testing.F) {
	f.Add([]byte(`{"k":"3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29","salt":"","seq":1,"v":"MTI6SGVsbG8gV29ybGQh","sig":"305ac8aeb6c9c151fa120f120ea2cfb923564e11552d06a5d856091e5e853cff1260d3f39e4999684aa92eb73ffd136e6f4f3ecbfda0ce53a1608ecd7ae21f01"}`))
	f.Add([]byte(`{"k":"00","v":"","sig":""}`))
	f.Add([]byte(`{"seq":-1,"cas":3}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		it, _, err := parseItem(raw)
		if err != nil {
			return
		}
		if err := it.Verify(); err != nil {
			t.Fatalf("parseItem accepted an item Verify refuses: %v", err)
		}
		again, _ := json.Marshal(itemJSON(it))
		it2, _, err := parseItem(again)
		if err != nil || it2.Key != it.Key || it2.Seq != it.Seq || !bytes.Equal(it2.V, it.V) || !bytes.Equal(it2.Salt, it.Salt) || it2.Sig != it.Sig {
			t.Fatalf("round trip changed the item: %v", err)
		}
	})
}

// FuzzPostEvent: any body the node accepts as a post is carried by its
// Server-Sent Event exactly: parsing the event the way an EventSource
// does gives back the body.
func FuzzPostEvent(f *testing.F) {
	f.Add([]byte("hello"))
	f.Add([]byte("a\n\nb\n"))
	f.Add([]byte("\n"))
	f.Add([]byte("data: x\nid: y"))
	f.Fuzz(func(t *testing.T, body []byte) {
		if checkPost(body) != nil {
			return
		}
		ev := sseEvent("0123456789abcdef0123456789abcdef", body)
		if !bytes.HasSuffix(ev, []byte("\n\n")) {
			t.Fatalf("event does not end with a blank line: %q", ev)
		}
		// An EventSource: lines split on LF, "data:" values joined by LF,
		// the event dispatched at the first blank line.
		lines := bytes.Split(ev[:len(ev)-2], []byte{'\n'})
		var data [][]byte
		for _, l := range lines {
			if len(l) == 0 {
				t.Fatalf("blank line inside the event for %q", body)
			}
			if v, ok := bytes.CutPrefix(l, []byte("data: ")); ok {
				data = append(data, v)
			} else if !bytes.HasPrefix(l, []byte("id: ")) {
				t.Fatalf("unexpected line %q", l)
			}
		}
		if got := bytes.Join(data, []byte{'\n'}); !bytes.Equal(got, body) {
			t.Fatalf("event carries %q, body was %q", got, body)
		}
	})
}

// FuzzRoomHash: a hash is accepted only if it is safe in a URL path and
// in the signed mesh string (no separators).
func FuzzRoomHash(f *testing.F) {
	f.Add("0123456789abcdef")
	f.Add("../../etc")
	f.Fuzz(func(t *testing.T, h string) {
		if !validRoomHash(h) {
			return
		}
		if len(h) < 8 || len(h) > 128 || bytes.ContainsAny([]byte(h), "/\n?#%. ") {
			t.Fatalf("accepted %q", h)
		}
	})
}
