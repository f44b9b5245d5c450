package node

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/keyhole-p2p/keyhole/dht"
)

// dhtItem is a BEP 44 mutable item in the JSON of /dht-get and /dht-put.
type dhtItem struct {
	K    string `json:"k"`
	Salt string `json:"salt"`
	Seq  int64  `json:"seq"`
	V    string `json:"v"`
	Sig  string `json:"sig"`
	Cas  *int64 `json:"cas,omitempty"`
}

func itemJSON(it *dht.Item) dhtItem {
	return dhtItem{
		K: hex.EncodeToString(it.Key[:]), Salt: hex.EncodeToString(it.Salt), Seq: it.Seq,
		V: base64.StdEncoding.EncodeToString(it.V), Sig: hex.EncodeToString(it.Sig[:]),
	}
}

// decodeKeySalt reads the hex key and salt of a request.
func decodeKeySalt(k, salt string) (key [32]byte, s []byte, err error) {
	kb, err := hex.DecodeString(k)
	if err != nil || len(kb) != 32 {
		return key, nil, errors.New("k must be the 32-byte Ed25519 public key in hex (64 digits)")
	}
	s, err = hex.DecodeString(salt)
	if err != nil || len(s) > 64 {
		return key, nil, errors.New("salt must be hex, at most 64 bytes")
	}
	return [32]byte(kb), s, nil
}

func (s *Server) serveDHTGet(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.admit(w, r); !ok {
		return
	}
	if s.opts.DHT == nil {
		s.fail(w, r, http.StatusNotFound, "this node has no DHT; ask another node from /nodes")
		return
	}
	q := r.URL.Query()
	key, salt, err := decodeKeySalt(q.Get("k"), q.Get("salt"))
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	var o dht.GetOptions
	if v := q.Get("seq"); v != "" {
		seq, err := strconv.ParseUint(v, 10, 63)
		if err != nil {
			s.fail(w, r, http.StatusBadRequest, "seq must be a non-negative integer")
			return
		}
		o.NewerThan = seq
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	it, _, err := s.opts.DHT.GetItem(ctx, key, salt, o)
	if err != nil {
		if errors.Is(err, dht.ErrNotFound) || errors.Is(err, context.DeadlineExceeded) {
			s.m.dht.WithLabelValues("get", "not_found").Inc()
			s.fail(w, r, http.StatusNotFound, "the DHT holds no such item (or none newer than seq)")
			return
		}
		s.m.dht.WithLabelValues("get", "error").Inc()
		s.fail(w, r, http.StatusBadGateway, "DHT lookup failed: "+err.Error())
		return
	}
	s.m.dht.WithLabelValues("get", "ok").Inc()
	writeJSON(w, http.StatusOK, itemJSON(it))
}

// parseItem turns /dht-put JSON into a verified item.
func parseItem(raw []byte) (*dht.Item, int64, error) {
	var in dhtItem
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, 0, fmt.Errorf("the body is not an item {k, salt, seq, v, sig}: %w", err)
	}
	key, salt, err := decodeKeySalt(in.K, in.Salt)
	if err != nil {
		return nil, 0, err
	}
	v, err := base64.StdEncoding.Strict().DecodeString(in.V)
	if err != nil || strings.ContainsAny(in.V, "\r\n") {
		return nil, 0, errors.New("v must be the bencoded value in standard base64")
	}
	sig, err := hex.DecodeString(in.Sig)
	if err != nil || len(sig) != 64 {
		return nil, 0, errors.New("sig must be the 64-byte signature in hex")
	}
	if in.Seq < 0 {
		return nil, 0, errors.New("seq must not be negative")
	}
	it := &dht.Item{Key: key, Salt: salt, Seq: in.Seq, V: v, Sig: [64]byte(sig)}
	if err := it.Verify(); err != nil {
		return nil, 0, err
	}
	var cas int64
	if in.Cas != nil {
		cas = *in.Cas
	}
	return it, cas, nil
}

func (s *Server) serveDHTPut(w http.ResponseWriter, r *http.Request) {
	ap, err := s.clientAddr(r)
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, "cannot tell your address: "+err.Error())
		return
	}
	if s.opts.DHT == nil {
		s.fail(w, r, http.StatusNotFound, "this node has no DHT; ask another node from /nodes")
		return
	}
	body, ok := s.readBody(w, r, 4096, "the item")
	if !ok || !s.checkWork(w, r, "dht-put", body, ap.Addr()) {
		return
	}
	it, cas, err := parseItem(body)
	if err != nil {
		s.m.dht.WithLabelValues("put", "invalid").Inc()
		s.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	res, err := s.opts.DHT.PutItem(ctx, it, cas)
	if err != nil {
		status := http.StatusBadGateway
		if errors.Is(err, dht.ErrOutdated) {
			status = http.StatusConflict
		}
		s.m.dht.WithLabelValues("put", "error").Inc()
		s.fail(w, r, status, err.Error())
		return
	}
	s.m.dht.WithLabelValues("put", "ok").Inc()
	writeJSON(w, http.StatusOK, map[string]int{"stored": res.Stored, "tried": res.Tried})
}
