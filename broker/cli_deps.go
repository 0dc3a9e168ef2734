package broker

// Enrollment is what the CLI and enrollment HTTP routes (cli.go) ask of the
// database. Filled in by the enrollment work (issue 3).
type Enrollment interface{}
