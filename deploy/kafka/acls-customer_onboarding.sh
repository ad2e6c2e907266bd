#!/usr/bin/env bash
# Kafka ACLs for the pipeline 'customer_onboarding' (made by: stream-engine topics acls).
# Brokers need an authorizer and allow.everyone.if.no.acl.found=false, so that
# nobody but the workers can write a stage topic or read the dead-letter topic.
# Usage: BOOTSTRAP=host:9092 COMMAND_CONFIG=admin.properties bash this-script.sh
set -euo pipefail
: "${BOOTSTRAP:?set BOOTSTRAP to the brokers, host:port}"
: "${COMMAND_CONFIG:?set COMMAND_CONFIG to an admin client properties file}"

# User:producer: producers
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$COMMAND_CONFIG" \
  --add --allow-principal User:producer \
  --operation Write \
  --operation Describe \
  --topic customer_onboarding.input

# User:stream-engine: a stage consumes it
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$COMMAND_CONFIG" \
  --add --allow-principal User:stream-engine \
  --operation Read \
  --operation Describe \
  --topic customer_onboarding.input

# User:stream-engine: a stage consumes it
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$COMMAND_CONFIG" \
  --add --allow-principal User:stream-engine \
  --operation Read \
  --operation Describe \
  --topic customer_onboarding.stage.data_quality

# User:stream-engine: a stage consumes it
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$COMMAND_CONFIG" \
  --add --allow-principal User:stream-engine \
  --operation Read \
  --operation Describe \
  --topic customer_onboarding.stage.compliance

# User:stream-engine: a stage consumes it
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$COMMAND_CONFIG" \
  --add --allow-principal User:stream-engine \
  --operation Read \
  --operation Describe \
  --topic customer_onboarding.stage.business_rules

# User:stream-engine: a stage consumes it
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$COMMAND_CONFIG" \
  --add --allow-principal User:stream-engine \
  --operation Read \
  --operation Describe \
  --topic customer_onboarding.stage.post_processing

# User:stream-engine: a stage writes it
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$COMMAND_CONFIG" \
  --add --allow-principal User:stream-engine \
  --operation Write \
  --operation Describe \
  --topic customer_onboarding.stage.data_quality

# User:stream-engine: a stage writes it
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$COMMAND_CONFIG" \
  --add --allow-principal User:stream-engine \
  --operation Write \
  --operation Describe \
  --topic customer_onboarding.stage.compliance

# User:stream-engine: a stage writes it
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$COMMAND_CONFIG" \
  --add --allow-principal User:stream-engine \
  --operation Write \
  --operation Describe \
  --topic customer_onboarding.stage.business_rules

# User:stream-engine: a stage writes it
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$COMMAND_CONFIG" \
  --add --allow-principal User:stream-engine \
  --operation Write \
  --operation Describe \
  --topic customer_onboarding.stage.post_processing

# User:stream-engine: a stage writes it
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$COMMAND_CONFIG" \
  --add --allow-principal User:stream-engine \
  --operation Write \
  --operation Describe \
  --topic customer_onboarding.decisions

# User:stream-engine: a stage writes it
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$COMMAND_CONFIG" \
  --add --allow-principal User:stream-engine \
  --operation Write \
  --operation Describe \
  --topic customer_onboarding.rejected

# User:stream-engine: a stage writes it
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$COMMAND_CONFIG" \
  --add --allow-principal User:stream-engine \
  --operation Write \
  --operation Describe \
  --topic customer_onboarding.review

# User:stream-engine: dead letters: written by stages, read by dlq replay
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$COMMAND_CONFIG" \
  --add --allow-principal User:stream-engine \
  --operation Write \
  --operation Read \
  --operation Describe \
  --topic customer_onboarding.dlq

# User:stream-engine: the stages' consumer groups
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$COMMAND_CONFIG" \
  --add --allow-principal User:stream-engine \
  --operation Read \
  --group customer_onboarding. \
  --resource-pattern-type prefixed

# User:decisions-reader: decisions
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$COMMAND_CONFIG" \
  --add --allow-principal User:decisions-reader \
  --operation Read \
  --operation Describe \
  --topic customer_onboarding.decisions

# User:decisions-reader: decisions
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$COMMAND_CONFIG" \
  --add --allow-principal User:decisions-reader \
  --operation Read \
  --operation Describe \
  --topic customer_onboarding.rejected

# User:decisions-reader: decisions
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$COMMAND_CONFIG" \
  --add --allow-principal User:decisions-reader \
  --operation Read \
  --operation Describe \
  --topic customer_onboarding.review

# User:decisions-reader: the readers' groups
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$COMMAND_CONFIG" \
  --add --allow-principal User:decisions-reader \
  --operation Read \
  --group customer_onboarding.readers. \
  --resource-pattern-type prefixed
