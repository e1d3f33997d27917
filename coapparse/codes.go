package coapparse

import "strconv"

// Type is the 2-bit message type (RFC 7252 §3).
type Type uint8

// Message types.
const (
	Confirmable     Type = 0 // CON
	NonConfirmable  Type = 1 // NON
	Acknowledgement Type = 2 // ACK
	Reset           Type = 3 // RST
)

// String returns CON, NON, ACK or RST ("Type(N)" for values over 3).
func (t Type) String() string {
	switch t {
	case Confirmable:
		return "CON"
	case NonConfirmable:
		return "NON"
	case Acknowledgement:
		return "ACK"
	case Reset:
		return "RST"
	}
	return "Type(" + strconv.Itoa(int(t)) + ")"
}

// Code is the 8-bit code: a 3-bit class and a 5-bit detail, written c.dd.
type Code uint8

// NewCode builds the code class.detail (class 0–7, detail 0–31).
func NewCode(class, detail uint8) Code { return Code(class<<5 | detail&0x1f) }

// Class is the code's class: 0 request (or Empty), 2 success, 4 client
// error, 5 server error; 1, 6 and 7 are reserved over UDP.
func (c Code) Class() uint8 { return uint8(c) >> 5 }

// Detail is the code's detail (0–31).
func (c Code) Detail() uint8 { return uint8(c) & 0x1f }

// IsEmpty reports code 0.00, the Empty message.
func (c Code) IsEmpty() bool { return c == Empty }

// IsRequest reports a method code (class 0, detail 1–31).
func (c Code) IsRequest() bool { return c.Class() == 0 && c != Empty }

// IsResponse reports a response code (class 2, 4 or 5).
func (c Code) IsResponse() bool {
	cl := c.Class()
	return cl == 2 || cl == 4 || cl == 5
}

// Method codes (RFC 7252 §12.1.1, FETCH/PATCH/iPATCH from RFC 8132).
const (
	Empty  Code = 0x00 // 0.00
	GET    Code = 0x01 // 0.01
	POST   Code = 0x02 // 0.02
	PUT    Code = 0x03 // 0.03
	DELETE Code = 0x04 // 0.04
	FETCH  Code = 0x05 // 0.05
	PATCH  Code = 0x06 // 0.06
	IPATCH Code = 0x07 // 0.07
)

// Response codes (RFC 7252 §12.1.2 and the RFCs named per code).
const (
	Created                  Code = 2<<5 | 1  // 2.01
	Deleted                  Code = 2<<5 | 2  // 2.02
	Valid                    Code = 2<<5 | 3  // 2.03
	Changed                  Code = 2<<5 | 4  // 2.04
	Content                  Code = 2<<5 | 5  // 2.05
	Continue                 Code = 2<<5 | 31 // 2.31, RFC 7959
	BadRequest               Code = 4<<5 | 0  // 4.00
	Unauthorized             Code = 4<<5 | 1  // 4.01
	BadOption                Code = 4<<5 | 2  // 4.02
	Forbidden                Code = 4<<5 | 3  // 4.03
	NotFound                 Code = 4<<5 | 4  // 4.04
	MethodNotAllowed         Code = 4<<5 | 5  // 4.05
	NotAcceptable            Code = 4<<5 | 6  // 4.06
	RequestEntityIncomplete  Code = 4<<5 | 8  // 4.08, RFC 7959
	Conflict                 Code = 4<<5 | 9  // 4.09, RFC 8132
	PreconditionFailed       Code = 4<<5 | 12 // 4.12
	RequestEntityTooLarge    Code = 4<<5 | 13 // 4.13
	UnsupportedContentFormat Code = 4<<5 | 15 // 4.15
	UnprocessableEntity      Code = 4<<5 | 22 // 4.22, RFC 8132
	TooManyRequests          Code = 4<<5 | 29 // 4.29, RFC 8516
	InternalServerError      Code = 5<<5 | 0  // 5.00
	NotImplemented           Code = 5<<5 | 1  // 5.01
	BadGateway               Code = 5<<5 | 2  // 5.02
	ServiceUnavailable       Code = 5<<5 | 3  // 5.03
	GatewayTimeout           Code = 5<<5 | 4  // 5.04
	ProxyingNotSupported     Code = 5<<5 | 5  // 5.05
	HopLimitReached          Code = 5<<5 | 8  // 5.08, RFC 8768
)

// codeNames holds the name of every assigned code, "" elsewhere. Never modified.
var codeNames = [256]string{
	Empty: "Empty", GET: "GET", POST: "POST", PUT: "PUT", DELETE: "DELETE",
	FETCH: "FETCH", PATCH: "PATCH", IPATCH: "iPATCH",
	Created: "Created", Deleted: "Deleted", Valid: "Valid", Changed: "Changed",
	Content: "Content", Continue: "Continue",
	BadRequest: "Bad Request", Unauthorized: "Unauthorized", BadOption: "Bad Option",
	Forbidden: "Forbidden", NotFound: "Not Found", MethodNotAllowed: "Method Not Allowed",
	NotAcceptable: "Not Acceptable", RequestEntityIncomplete: "Request Entity Incomplete",
	Conflict: "Conflict", PreconditionFailed: "Precondition Failed",
	RequestEntityTooLarge:    "Request Entity Too Large",
	UnsupportedContentFormat: "Unsupported Content-Format",
	UnprocessableEntity:      "Unprocessable Entity", TooManyRequests: "Too Many Requests",
	InternalServerError: "Internal Server Error", NotImplemented: "Not Implemented",
	BadGateway: "Bad Gateway", ServiceUnavailable: "Service Unavailable",
	GatewayTimeout: "Gateway Timeout", ProxyingNotSupported: "Proxying Not Supported",
	HopLimitReached: "Hop Limit Reached",
}

// Name returns the code's registered name ("GET", "Content", "Not Found"),
// or "" for a code no specification assigns.
func (c Code) Name() string { return codeNames[c] }

// Known reports whether the code is assigned (Name is not empty).
func (c Code) Known() bool { return codeNames[c] != "" }

// String returns the code as c.dd, e.g. "2.05" or "0.01".
func (c Code) String() string {
	d := c.Detail()
	return string([]byte{'0' + c.Class(), '.', '0' + d/10, '0' + d%10})
}
