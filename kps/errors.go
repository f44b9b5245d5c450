package kps

import (
	"errors"
	"fmt"
)

// ErrorCode is a stream-reset, stop-sending or connection-close reason
// from the KPS registry (SPEC section 9.1). The same numbers travel in
// WebRTC frames and as QUIC application error codes.
type ErrorCode uint32

// The KPS error-code registry.
const (
	CodeNone             ErrorCode = 0
	CodeCancelled        ErrorCode = 1
	CodeClosed           ErrorCode = 2
	CodeReset            ErrorCode = 3
	CodeTimeout          ErrorCode = 4
	CodeNetworkError     ErrorCode = 5
	CodeProtocolError    ErrorCode = 6
	CodeUnsupported      ErrorCode = 7
	CodeTooLarge         ErrorCode = 8
	CodeQueueFull        ErrorCode = 9
	CodePermissionDenied ErrorCode = 10
	CodeInternalError    ErrorCode = 11
)

var codeNames = [...]string{"", "cancelled", "closed", "reset", "timeout", "network-error", "protocol-error",
	"unsupported", "too-large", "queue-full", "permission-denied", "internal-error"}

// Normalize maps codes outside the registry to CodeInternalError, as the
// specification requires of receivers.
func (c ErrorCode) Normalize() ErrorCode {
	if int(c) < len(codeNames) {
		return c
	}
	return CodeInternalError
}

func (c ErrorCode) String() string {
	if c == CodeNone {
		return "no reason"
	}
	return codeNames[c.Normalize()]
}

// StreamError is returned by a stream operation after the stream was
// reset or cancelled, by this side (Remote false) or the peer.
type StreamError struct {
	Code   ErrorCode
	Remote bool
}

func (e *StreamError) Error() string {
	who := "locally"
	if e.Remote {
		who = "by the peer"
	}
	return fmt.Sprintf("kps: stream reset %s (%s)", who, e.Code)
}

// ConnError is returned once a connection has been closed, with the code
// it was closed with.
type ConnError struct {
	Code   ErrorCode
	Reason string
	Remote bool
}

func (e *ConnError) Error() string {
	who := "locally"
	if e.Remote {
		who = "by the peer"
	}
	s := fmt.Sprintf("kps: connection closed %s (%s)", who, e.Code)
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// DatagramTooLargeError is returned by SendDatagram for a payload over the
// connection's current limit, which it reports.
type DatagramTooLargeError struct {
	MaxDatagramPayloadSize int
}

func (e *DatagramTooLargeError) Error() string {
	return fmt.Sprintf("kps: datagram too large: this connection carries at most %d bytes", e.MaxDatagramPayloadSize)
}

// Errors for the checks a dial makes.
var (
	// ErrCertHashMismatch: the endpoint presented a certificate whose hash
	// is not the one in the address: not the endpoint that was asked for.
	ErrCertHashMismatch = errors.New("kps: certificate does not match the certhash in the address")
	// ErrWriteClosed: Write after CloseWrite or Reset.
	ErrWriteClosed = errors.New("kps: write on a stream whose write half is closed")
	// ErrListenerClosed: Accept after Close.
	ErrListenerClosed = errors.New("kps: listener closed")
)
