-- Argo CD health check for irsa.dev/PodIamRole (docs/gitops.md shows how to install it).
-- Healthy: Ready=True for the current generation. Degraded: Stalled=True, only a change
-- by someone can help. Progressing: the operator has not seen this generation yet, or
-- works on it by itself (Reconciling=True).
local hs = {
  status = "Progressing",
  message = "Waiting for irsa-operator to reconcile this generation",
}
local status = obj.status
if status == nil or status.observedGeneration == nil
    or (obj.metadata.generation ~= nil and status.observedGeneration ~= obj.metadata.generation) then
  return hs
end
local ready, stalled
for _, condition in ipairs(status.conditions or {}) do
  if condition.type == "Ready" then
    ready = condition
  elseif condition.type == "Stalled" then
    stalled = condition
  end
end
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.reason .. ": " .. stalled.message
elseif ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
elseif ready ~= nil then
  hs.message = ready.reason .. ": " .. ready.message
end
return hs
