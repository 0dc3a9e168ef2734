package wire

// JSLen is the length of s in UTF-16 code units, as JS's String.length
// (the unit upstream's size limits count in).
func JSLen(s string) int {
	n := 0
	for _, r := range s {
		if r >= 0x10000 {
			n += 2
		} else {
			n++
		}
	}
	return n
}
