// Verdicts of github.com/santhosh-tekuri/jsonschema/v6 (JSON Schema 2020-12, formats asserted,
// Go's RE2 regular expressions) on the contract corpus.
// Usage: contract-check-go SCHEMA.json CORPUS.jsonl -> one JSON line per record:
// {"name": ..., "valid": true|false, "error": ...}. Exit status 2 when the schema does not compile.
package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

type record struct {
	Name string `json:"name"`
	B64  string `json:"b64"`
}

type verdict struct {
	Name  string  `json:"name"`
	Valid bool    `json:"valid"`
	Error *string `json:"error"`
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: contract-check-go SCHEMA.json CORPUS.jsonl")
		os.Exit(2)
	}
	compiler := jsonschema.NewCompiler()
	compiler.AssertFormat()
	schema, err := compiler.Compile(os.Args[1])
	if err != nil {
		fmt.Fprintf(os.Stderr, "jsonschema: %s does not compile: %v\n", os.Args[1], err)
		os.Exit(2)
	}
	corpus, err := os.Open(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	defer corpus.Close()
	scanner := bufio.NewScanner(corpus)
	scanner.Buffer(make([]byte, 0, 1<<20), 1<<24)
	out := json.NewEncoder(os.Stdout)
	for scanner.Scan() {
		var rec record
		if err := json.Unmarshal(scanner.Bytes(), &rec); err != nil {
			fmt.Fprintln(os.Stderr, "corpus line:", err)
			os.Exit(2)
		}
		data, err := base64.StdEncoding.DecodeString(rec.B64)
		if err != nil {
			fmt.Fprintln(os.Stderr, "corpus b64:", err)
			os.Exit(2)
		}
		if err := out.Encode(check(schema, rec.Name, data)); err != nil {
			os.Exit(2)
		}
	}
	if err := scanner.Err(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
}

// check decodes as a Go producer would (UTF-8 required; the library's decoder keeps numbers
// exact) and validates.
func check(schema *jsonschema.Schema, name string, data []byte) verdict {
	fail := func(message string) verdict { return verdict{Name: name, Valid: false, Error: &message} }
	if !utf8.Valid(data) {
		return fail("not UTF-8")
	}
	value, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fail("not JSON: " + err.Error())
	}
	if err := schema.Validate(value); err != nil {
		return fail(err.Error())
	}
	return verdict{Name: name, Valid: true}
}
