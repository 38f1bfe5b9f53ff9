package benchkit

import "strings"

// StringList is a repeatable command-line flag: each use adds a value.
type StringList []string

func (s *StringList) String() string { return strings.Join(*s, " ") }

// Set adds a value.
func (s *StringList) Set(v string) error { *s = append(*s, v); return nil }
