package wire

// CodeInvalidString is the error code of a frame or body whose JSON carries
// a string with U+0000 (\u0000): PostgreSQL text cannot hold it, so it is
// refused at decode instead of failing deep in a query (issue 12 item 8).
const CodeInvalidString = "invalid_string"

// MsgInvalidString is the matching error message.
const MsgInvalidString = `strings must not contain U+0000 (\u0000)`

// HasNUL reports whether the JSON text data has a string containing U+0000:
// an escape \u0000 (raw control characters are invalid JSON and fail the
// decoder anyway). An escaped backslash followed by u0000 is not one.
func HasNUL(data []byte) bool {
	for i := 0; i < len(data); i++ {
		if data[i] != '\\' || i+1 >= len(data) {
			continue
		}
		if data[i+1] == 'u' && i+5 < len(data) && string(data[i+2:i+6]) == "0000" {
			return true
		}
		i++ // skip the escaped character
	}
	return false
}
