package collab

import (
	"encoding/json"
	"errors"
	"fmt"
)

// request is one parsed frame: its type, its fields (undecoded) and the
// _reqId to echo. Fields are decoded per verb, so a field of the wrong type
// is reported by name.
type request struct {
	typ    string
	reqID  string
	fields map[string]json.RawMessage
	raw    []byte
}

func parseRequest(typ string, raw []byte) (*request, error) {
	req := &request{typ: typ, raw: raw}
	if err := json.Unmarshal(raw, &req.fields); err != nil || req.fields == nil {
		return req, reject("invalid_message", "frame is not a JSON object")
	}
	req.reqID = req.str("_reqId")
	return req, nil
}

// str returns field name when it is a JSON string, else "".
func (r *request) str(name string) string {
	var s string
	if raw, ok := r.fields[name]; ok && json.Unmarshal(raw, &s) == nil {
		return s
	}
	return ""
}

// decode unmarshals the frame into v; a field of the wrong JSON type is an
// invalid_args rejection naming the field.
func (r *request) decode(v any) error {
	err := json.Unmarshal(r.raw, v)
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return invalidArgs(fmt.Sprintf("field %s must be a %s", te.Field, jsonKind(te.Type.Kind().String())))
	}
	return invalidArgs("malformed " + r.typ + " request")
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "slice":
		return "array"
	case "bool":
		return "boolean"
	case "int", "int64", "float64":
		return "number"
	}
	return "object"
}

// frame is one reply, marshalled by the broker.
type frame map[string]any

// newFrame starts a reply of type typ that echoes the request's _reqId.
func newFrame(typ string, req *request) frame {
	f := frame{"type": typ}
	if req != nil && req.reqID != "" {
		f["_reqId"] = req.reqID
	}
	return f
}

// inertAck is the never-silent answer to a fire-and-forget verb (E.14.4-4):
// an ack whose empty id matches no pending send.
func inertAck(req *request, errText string) frame {
	f := newFrame("ack", req)
	f["id"], f["messageId"], f["queued"] = "", "", false
	if errText != "" {
		f["error"] = errText
	}
	return f
}

// rejection is the typed fallback of req's verb carrying err's code and
// message: an `error` frame where the fallback is one, else the verb's own
// reply with "code" and "error" added (recall's two frames both carry them).
func rejection(req *request, err error) []any {
	var ce *Error
	if !errors.As(err, &ce) {
		ce = reject("invalid_message", "invalid request")
	}
	fs := fallback(req)
	out := make([]any, len(fs))
	for i, f := range fs {
		if f["type"] == "error" {
			f["code"], f["message"] = ce.Code, ce.Message
		} else {
			f["code"], f["error"] = ce.Code, ce.Error()
		}
		out[i] = f
	}
	return out
}
