-- Argo CD health check for promptalias.io/ClusterPromptRegistry.
-- Runs without Lua's string library (Argo CD's default for custom checks): only base and table.
-- Order, as kstatus reads status: a status older than the spec, Stalled, Reconciling, then Ready.
-- Ready=False (credentials refused, tracking server down) is Degraded: every PromptAlias using the
-- registry is stuck until it recovers.
local hs = {}

local function find(conditions, kind)
  if conditions == nil then
    return nil
  end
  for _, condition in ipairs(conditions) do
    if condition.type == kind then
      return condition
    end
  end
  return nil
end

local function describe(condition, fallback)
  local reason = condition.reason
  local message = condition.message
  if message ~= nil and message ~= "" then
    if reason ~= nil and reason ~= "" then
      return reason .. ": " .. message
    end
    return message
  end
  if reason ~= nil and reason ~= "" then
    return reason
  end
  return fallback
end

local status = obj.status
if status == nil or status.conditions == nil or #status.conditions == 0 then
  hs.status = "Progressing"
  hs.message = "Waiting for the promptalias operator to check the registry"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

local stalled = find(status.conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled, "Stalled")
  return hs
end

local reconciling = find(status.conditions, "Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(reconciling, "Reconciling")
  return hs
end

local ready = find(status.conditions, "Ready")
if ready == nil or ready.status == "Unknown" then
  hs.status = "Progressing"
  if ready == nil then
    hs.message = "Waiting for the Ready condition"
  else
    hs.message = describe(ready, "Waiting for the Ready condition")
  end
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
  if status.serverVersion ~= nil and status.serverVersion ~= "" then
    hs.message = "Connected to MLflow " .. status.serverVersion
  else
    hs.message = describe(ready, "Connected")
  end
  return hs
end
hs.status = "Degraded"
hs.message = describe(ready, "Not ready")
return hs
