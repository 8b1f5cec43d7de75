// Package rules loads rule files and runs them: YAML rules whose
// conditions are expressions in the --filter language, compiled once into
// internal/cep patterns; `semprop rules test` and `lint` (Test,
// Lint); and Engine, which runs a rule set over the durable event stream
// from a persisted checkpoint and publishes each match as a
// semprop.rule.match event, exactly once across crashes. docs/rules.md
// describes the language and the semantics.
package rules
