# The operator's own IAM role on EKS (IRSA). The policy is the one `irsa-operator iam-policy`
# renders; write it next to this file first, with the flags the operator runs with
# (the boundary policy must exist: docs/operator-iam-policy.md):
#
#   irsa-operator iam-policy --cluster-name my-cluster \
#     --permissions-boundary arn:aws:iam::111122223333:policy/irsa-boundary > operator-policy.json
#   terraform apply -var cluster_name=my-cluster -var oidc_provider_arn=arn:aws:iam::111122223333:oidc-provider/oidc.eks...

variable "cluster_name" {
  type        = string
  description = "The operator's --cluster-name."
}

variable "oidc_provider_arn" {
  type        = string
  description = "ARN of the cluster's IAM OIDC provider (e.g. module.eks.oidc_provider_arn)."
}

variable "operator_namespace" {
  type    = string
  default = "irsa-system"
}

variable "operator_service_account" {
  type    = string
  default = "irsa-operator"
}

locals {
  # arn:<partition>:iam::<account>:oidc-provider/<issuer host and path>
  issuer_host_path = split("oidc-provider/", var.oidc_provider_arn)[1]
}

data "aws_iam_policy_document" "trust" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.issuer_host_path}:sub"
      values   = ["system:serviceaccount:${var.operator_namespace}:${var.operator_service_account}"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.issuer_host_path}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "irsa_operator" {
  name               = "irsa-operator-${var.cluster_name}"
  description        = "irsa-operator, which manages the IRSA roles of its cluster"
  assume_role_policy = data.aws_iam_policy_document.trust.json
}

resource "aws_iam_role_policy" "irsa_operator" {
  name   = "irsa-operator"
  role   = aws_iam_role.irsa_operator.id
  policy = file("${path.module}/operator-policy.json")
}

output "role_arn" {
  description = "Annotate the operator's ServiceAccount with it (eks.amazonaws.com/role-arn)."
  value       = aws_iam_role.irsa_operator.arn
}
