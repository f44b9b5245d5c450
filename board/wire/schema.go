package wire

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"
)

// The JSON Schemas in schema/ are the normative description of every
// message. The board and the client both check each message against its
// schema before looking at it, and additionalProperties:false on every
// object is what keeps fields that would break blindness (an IP address,
// an SDP, a transport key in a presence) off the wire: a field the
// schema does not name is an error, not something to ignore.
//
// The checker below implements the part of JSON Schema (2020-12) these
// files use: type, properties, required, additionalProperties (false
// only), pattern, minLength, maxLength, enum, const, items, minItems,
// maxItems, uniqueItems, minimum, maximum, oneOf, and $ref to "#/$defs/".
// A schema that uses anything else fails to load, so the files cannot
// quietly say more than is checked.

//go:embed schema/orp.schema.json
var schemaFiles embed.FS

// Schema is one compiled definition of orp.schema.json.
type Schema struct {
	name string
	n    *node
	doc  *node
}

// Name is the schema's definition name in orp.schema.json.
func (s *Schema) Name() string { return s.name }

type node struct {
	types    []string
	props    map[string]*node
	required []string
	closed   bool
	pattern  *regexp.Regexp
	minLen   *int
	maxLen   *int
	enum     []any
	constVal any
	hasConst bool
	items    *node
	minItems *int
	maxItems *int
	unique   bool
	minimum  *float64
	maximum  *float64
	oneOf    []*node
	ref      string
	defs     map[string]*node
}

var knownKeywords = map[string]bool{
	"$schema": true, "$id": true, "$defs": true, "$ref": true, "title": true, "description": true,
	"type": true, "properties": true, "required": true, "additionalProperties": true,
	"pattern": true, "minLength": true, "maxLength": true, "enum": true, "const": true,
	"items": true, "minItems": true, "maxItems": true, "uniqueItems": true,
	"minimum": true, "maximum": true, "oneOf": true,
}

// loadSchemas compiles schema/orp.schema.json; each of its $defs is a
// Schema, named by the definition.
func loadSchemas() (map[string]*Schema, error) {
	raw, err := schemaFiles.ReadFile("schema/orp.schema.json")
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("orp.schema.json: %w", err)
	}
	root, err := compile(doc, "orp.schema.json")
	if err != nil {
		return nil, err
	}
	out := map[string]*Schema{}
	for name, def := range root.defs {
		out[name] = &Schema{name: name, n: def, doc: root}
	}
	// Every reference must resolve, so a typo fails at start-up rather
	// than as a confusing rejection.
	for name, def := range root.defs {
		if err := def.resolve(root); err != nil {
			return nil, fmt.Errorf("orp.schema.json: %s: %w", name, err)
		}
	}
	return out, nil
}

func (n *node) resolve(doc *node) error {
	if n.ref != "" {
		if _, ok := doc.defs[n.ref]; !ok {
			return fmt.Errorf("reference to missing definition %q", n.ref)
		}
	}
	for _, c := range n.props {
		if err := c.resolve(doc); err != nil {
			return err
		}
	}
	for _, c := range n.oneOf {
		if err := c.resolve(doc); err != nil {
			return err
		}
	}
	if n.items != nil {
		return n.items.resolve(doc)
	}
	return nil
}

func compile(doc map[string]any, at string) (*node, error) {
	n := &node{}
	for k, v := range doc {
		if !knownKeywords[k] {
			return nil, fmt.Errorf("%s: unsupported schema keyword %q", at, k)
		}
		var err error
		switch k {
		case "type":
			switch t := v.(type) {
			case string:
				n.types = []string{t}
			case []any:
				for _, x := range t {
					s, _ := x.(string)
					n.types = append(n.types, s)
				}
			}
		case "properties":
			n.props = map[string]*node{}
			for name, sub := range v.(map[string]any) {
				if n.props[name], err = compileAny(sub, at+"/"+name); err != nil {
					return nil, err
				}
			}
		case "$defs":
			n.defs = map[string]*node{}
			for name, sub := range v.(map[string]any) {
				if n.defs[name], err = compileAny(sub, at+"/$defs/"+name); err != nil {
					return nil, err
				}
			}
		case "required":
			for _, x := range v.([]any) {
				n.required = append(n.required, x.(string))
			}
		case "additionalProperties":
			if b, ok := v.(bool); !ok || b {
				return nil, fmt.Errorf("%s: additionalProperties must be false", at)
			}
			n.closed = true
		case "pattern":
			if n.pattern, err = regexp.Compile(v.(string)); err != nil {
				return nil, fmt.Errorf("%s: %w", at, err)
			}
		case "minLength":
			n.minLen = intPtr(v)
		case "maxLength":
			n.maxLen = intPtr(v)
		case "minItems":
			n.minItems = intPtr(v)
		case "maxItems":
			n.maxItems = intPtr(v)
		case "uniqueItems":
			n.unique, _ = v.(bool)
		case "minimum":
			f, _ := v.(json.Number).Float64()
			n.minimum = &f
		case "maximum":
			f, _ := v.(json.Number).Float64()
			n.maximum = &f
		case "enum":
			n.enum = v.([]any)
		case "const":
			n.constVal, n.hasConst = v, true
		case "items":
			if n.items, err = compileAny(v, at+"/items"); err != nil {
				return nil, err
			}
		case "oneOf":
			for i, sub := range v.([]any) {
				c, err := compileAny(sub, fmt.Sprintf("%s/oneOf/%d", at, i))
				if err != nil {
					return nil, err
				}
				n.oneOf = append(n.oneOf, c)
			}
		case "$ref":
			n.ref = strings.TrimPrefix(v.(string), "#/$defs/")
			if n.ref == v.(string) {
				return nil, fmt.Errorf("%s: only #/$defs/ references are supported", at)
			}
		}
	}
	return n, nil
}

func compileAny(v any, at string) (*node, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: a schema must be an object", at)
	}
	return compile(m, at)
}

func intPtr(v any) *int {
	i, _ := v.(json.Number).Int64()
	n := int(i)
	return &n
}

// SchemaError says where a message breaks its schema.
type SchemaError struct {
	Schema string
	Path   string
	Msg    string
}

func (e *SchemaError) Error() string {
	p := e.Path
	if p == "" {
		p = "the message"
	}
	return fmt.Sprintf("not a valid %s: %s %s", e.Schema, p, e.Msg)
}

// Validate checks one JSON text against the schema.
func (s *Schema) Validate(raw []byte) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return &SchemaError{Schema: s.name, Msg: "is not JSON: " + err.Error()}
	}
	if dec.More() {
		return &SchemaError{Schema: s.name, Msg: "has data after the JSON value"}
	}
	return s.ValidateValue(v)
}

// ValidateValue checks a decoded value (numbers as json.Number).
func (s *Schema) ValidateValue(v any) error {
	if msg, path := s.n.check(s.doc, v, ""); msg != "" {
		return &SchemaError{Schema: s.name, Path: path, Msg: msg}
	}
	return nil
}

// check returns a message and the JSON path of the first violation, or
// "" if v is valid.
func (n *node) check(root *node, v any, path string) (string, string) {
	if n.ref != "" {
		d, ok := root.defs[n.ref]
		if !ok {
			return "refers to a missing definition " + n.ref, path
		}
		return d.check(root, v, path)
	}
	if len(n.types) > 0 && !hasType(n.types, v) {
		return "must be " + strings.Join(n.types, " or "), path
	}
	if n.hasConst && !jsonEqual(n.constVal, v) {
		return fmt.Sprintf("must be %v", n.constVal), path
	}
	if n.enum != nil {
		found := false
		for _, e := range n.enum {
			if jsonEqual(e, v) {
				found = true
				break
			}
		}
		if !found {
			return fmt.Sprintf("must be one of %v", n.enum), path
		}
	}
	switch x := v.(type) {
	case string:
		l := utf8.RuneCountInString(x)
		if n.minLen != nil && l < *n.minLen {
			return fmt.Sprintf("is shorter than %d characters", *n.minLen), path
		}
		if n.maxLen != nil && l > *n.maxLen {
			return fmt.Sprintf("is longer than %d characters", *n.maxLen), path
		}
		if n.pattern != nil && !n.pattern.MatchString(x) {
			return "has the wrong format", path
		}
	case json.Number:
		f, _ := x.Float64()
		if n.minimum != nil && f < *n.minimum {
			return fmt.Sprintf("is below %v", *n.minimum), path
		}
		if n.maximum != nil && f > *n.maximum {
			return fmt.Sprintf("is above %v", *n.maximum), path
		}
	case []any:
		if n.minItems != nil && len(x) < *n.minItems {
			return fmt.Sprintf("has fewer than %d items", *n.minItems), path
		}
		if n.maxItems != nil && len(x) > *n.maxItems {
			return fmt.Sprintf("has more than %d items", *n.maxItems), path
		}
		for i, item := range x {
			if n.items != nil {
				if m, p := n.items.check(root, item, fmt.Sprintf("%s[%d]", path, i)); m != "" {
					return m, p
				}
			}
			if n.unique {
				for j := range i {
					if jsonEqual(x[j], item) {
						return "has duplicate items", path
					}
				}
			}
		}
	case map[string]any:
		for _, r := range n.required {
			if _, ok := x[r]; !ok {
				return "is missing", join(path, r)
			}
		}
		for _, k := range slices.Sorted(maps.Keys(x)) {
			sub := x[k]
			pn, ok := n.props[k]
			if !ok {
				if n.closed {
					return "is not allowed (unknown field)", join(path, k)
				}
				continue
			}
			if m, p := pn.check(root, sub, join(path, k)); m != "" {
				return m, p
			}
		}
	}
	if n.oneOf != nil {
		matched := 0
		var first, firstPath string
		for _, alt := range n.oneOf {
			if m, p := alt.check(root, v, path); m == "" {
				matched++
			} else if first == "" {
				first, firstPath = m, p
			}
		}
		switch {
		case matched == 0:
			return first, firstPath
		case matched > 1:
			return "matches more than one allowed shape", path
		}
	}
	return "", ""
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func hasType(types []string, v any) bool {
	for _, t := range types {
		switch x := v.(type) {
		case string:
			if t == "string" {
				return true
			}
		case bool:
			if t == "boolean" {
				return true
			}
		case nil:
			if t == "null" {
				return true
			}
		case []any:
			if t == "array" {
				return true
			}
		case map[string]any:
			if t == "object" {
				return true
			}
		case json.Number:
			if t == "number" {
				return true
			}
			if t == "integer" {
				if _, err := x.Int64(); err == nil {
					return true
				}
			}
		}
	}
	return false
}

func jsonEqual(a, b any) bool {
	ab, err1 := json.Marshal(a)
	bb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ab, bb)
}
