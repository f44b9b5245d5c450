package canonjson

import (
	"errors"
	"testing"
)

func TestCanonicalize(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"b":1,"a":2}`, `{"a":2,"b":1}`},
		{` { "z" : { "y" : [ 3 , 2 , { "b" : null , "a" : true } ] } , "a" : "x" } `, `{"a":"x","z":{"y":[3,2,{"a":true,"b":null}]}}`},
		{`{"a":"<&>\u2028é"}`, "{\"a\":\"<&>\u2028é\"}"},
		{`"\u0001\n\t\"\\/"`, `"\u0001\n\t\"\\/"`},
		{`[1.0, 1e2, -0, 1e21, 1.5e-7, 0.000001, 123456789012]`, `[1,100,0,1e+21,1.5e-7,0.000001,123456789012]`},
		// JavaScript sorts by UTF-16 code units, so U+1F600 (surrogate 0xD83D) sorts before U+FF61.
		{`{"｡":1,"😀":2,"a":3}`, `{"a":3,"😀":2,"｡":1}`},
		{`[]`, `[]`},
		{`{}`, `{}`},
	}
	for _, tc := range tests {
		got, err := Canonicalize([]byte(tc.in))
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if string(got) != tc.want {
			t.Errorf("%s\n got %s\nwant %s", tc.in, got, tc.want)
		}
	}
}

func TestCanonicalizeRejects(t *testing.T) {
	deep := ""
	for i := 0; i < 100; i++ {
		deep += "["
	}
	for _, in := range []string{`{"a":1,"a":2}`, `NaN`, `{"a":Infinity}`, `1e999`, `{} {}`, "\"\xff\"", `{"a":`, deep, ``} {
		if _, err := Canonicalize([]byte(in)); !errors.Is(err, ErrNotCanonicalizable) {
			t.Errorf("%q: err = %v", in, err)
		}
	}
}

func TestMarshalStruct(t *testing.T) {
	type rec struct {
		Z string `json:"z"`
		A []int  `json:"a"`
	}
	got, err := Marshal(rec{Z: "<", A: []int{2, 1}})
	if err != nil || string(got) != `{"a":[2,1],"z":"<"}` {
		t.Errorf("%s %v", got, err)
	}
}

func FuzzCanonicalize(f *testing.F) {
	f.Add([]byte(`{"b":[1,{"d":2,"c":"x"}],"a":null}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := Canonicalize(in)
		if err != nil {
			return
		}
		again, err := Canonicalize(out)
		if err != nil || string(again) != string(out) {
			t.Fatalf("not idempotent: %s -> %s (%v)", out, again, err)
		}
	})
}
