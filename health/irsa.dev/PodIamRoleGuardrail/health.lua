-- Argo CD health check for irsa.dev/PodIamRoleGuardrail (docs/gitops.md shows how to
-- install it). A guardrail is pure configuration and applies as soon as it is stored:
-- the PodIamRoles it refuses turn Degraded with reason PolicyNotAllowed.
local hs = {
  status = "Healthy",
  message = "Guardrail in force; PodIamRoles it refuses report PolicyNotAllowed",
}
if obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Guardrail is being deleted"
end
return hs
