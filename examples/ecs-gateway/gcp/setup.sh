#!/usr/bin/env bash
# Google side of the gateway: workload identity federation from the gateway task's AWS role to
# the service account intentgate-gateway@acme-prod, and fine-grained access control on the
# orders database, so that service account can run sessions only as the database roles the
# gateway's policies name. Run once, as an acme-prod owner, with gcloud.
#
#   examples/ecs-gateway/gcp/setup.sh
#
# Idempotent enough to re-run: "already exists" errors of the create steps are ignored.
set -euo pipefail

project=acme-prod
project_number=998877665544          # intentgate.toml's google_from_aws audience names it
aws_account=111122223333
gateway_role=intentgate-gateway-task # the gateway task role; no other role may federate
pool=intentgate-ecs
provider=aws-$aws_account
sa=intentgate-gateway@$project.iam.gserviceaccount.com
instance=orders
database=orders

actual=$(gcloud projects describe "$project" --format='value(projectNumber)')
if [[ "$actual" != "$project_number" ]]; then
    echo "project $project has number $actual; update project_number here and the audience in intentgate.toml" >&2
    exit 1
fi

gcloud services enable --project="$project" \
    iam.googleapis.com iamcredentials.googleapis.com sts.googleapis.com spanner.googleapis.com

# 1. The pool, and an AWS provider for the account. Only the gateway's role gets through:
#    google.subject is the assumed-role ARN (…:assumed-role/intentgate-gateway-task/<ECS task id>),
#    attribute.aws_role the role name; the condition refuses every other role of the account.
gcloud iam workload-identity-pools create "$pool" --project="$project" --location=global \
    --display-name="intentgate on ECS" || true
gcloud iam workload-identity-pools providers create-aws "$provider" --project="$project" \
    --location=global --workload-identity-pool="$pool" --account-id="$aws_account" \
    --attribute-mapping="google.subject=assertion.arn,attribute.aws_role=assertion.arn.extract('assumed-role/{role}/')" \
    --attribute-condition="assertion.arn.startsWith('arn:aws:sts::$aws_account:assumed-role/$gateway_role/')" || true

# 2. The service account the gateway acts as; the federated role may impersonate it (and
#    nothing else may: no keys are ever created for it).
gcloud iam service-accounts create intentgate-gateway --project="$project" \
    --display-name="intentgate gateway (ECS, federated from AWS)" || true
gcloud iam service-accounts add-iam-policy-binding "$sa" --project="$project" \
    --role=roles/iam.workloadIdentityUser \
    --member="principalSet://iam.googleapis.com/projects/$project_number/locations/global/workloadIdentityPools/$pool/attribute.aws_role/$gateway_role"

# 3. Spanner: fine-grained access only. The service account may open sessions (and nothing
#    more) and may use exactly the database roles the gateway's policies name. Do NOT also grant
#    roles/spanner.databaseUser or databaseReader: those bypass the database roles.
gcloud spanner databases add-iam-policy-binding "$database" --project="$project" \
    --instance="$instance" --member="serviceAccount:$sa" \
    --role=roles/spanner.fineGrainedAccessUser
gcloud spanner databases add-iam-policy-binding "$database" --project="$project" \
    --instance="$instance" --member="serviceAccount:$sa" \
    --role=roles/spanner.databaseRoleUser \
    --condition='title=intentgate-database-roles,description=the roles the gateway policies name,expression=resource.type == "spanner.googleapis.com/DatabaseRole" && (resource.name.endsWith("/orders_reader") || resource.name.endsWith("/orders_writer") || resource.name.endsWith("/orders_analyst"))'

# 4. The database roles and their privileges (the table `orders` exists already).
gcloud spanner databases ddl update "$database" --project="$project" --instance="$instance" \
    --ddl='CREATE ROLE orders_reader;
GRANT SELECT ON TABLE orders TO ROLE orders_reader;
CREATE ROLE orders_writer;
GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE orders TO ROLE orders_writer;
CREATE ROLE orders_analyst;
GRANT SELECT ON TABLE orders TO ROLE orders_analyst'

echo "done: $provider federates arn:aws:iam::$aws_account:role/$gateway_role to $sa"
