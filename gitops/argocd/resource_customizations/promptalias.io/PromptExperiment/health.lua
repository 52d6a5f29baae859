-- Argo CD health check for promptalias.io/PromptExperiment.
-- Runs without Lua's string library (Argo CD's default for custom checks): only base and table.
-- Like Argo Rollouts: a ramp in progress is Progressing, a paused experiment (spec.suspend, or a
-- step without a pause duration) is Suspended, an aborted one is Degraded, a completed or promoted
-- one is Healthy. A status older than the spec, or Stalled, come first, as kstatus reads them.
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

local function split(status)
  local text = ""
  if status.currentWeight ~= nil then
    text = "candidate weight " .. status.currentWeight .. "%"
  end
  if status.currentStep ~= nil and obj.spec ~= nil and obj.spec.steps ~= nil then
    text = text .. " (step " .. (status.currentStep + 1) .. "/" .. #obj.spec.steps .. ")"
  end
  return text
end

local status = obj.status
if status == nil or (status.conditions == nil and status.phase == nil) then
  hs.status = "Progressing"
  hs.message = "Waiting for the promptalias operator to start the experiment"
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

local phase = status.phase
if phase == "Aborted" then
  hs.status = "Degraded"
  hs.message = "Aborted: the candidate receives no traffic"
  return hs
end
if phase == "Paused" then
  hs.status = "Suspended"
  hs.message = "Paused at " .. split(status)
  return hs
end
if phase == "Promoted" then
  hs.status = "Healthy"
  hs.message = "Promoted: the baseline alias points at the candidate version"
  return hs
end
if phase == "Progressing" then
  hs.status = "Progressing"
  hs.message = "Ramping up: " .. split(status)
  return hs
end

local reconciling = find(status.conditions, "Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(reconciling, "Reconciling")
  return hs
end

local ready = find(status.conditions, "Ready")
if ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
  hs.message = describe(ready, "Not ready")
  return hs
end
if phase == "Completed" or (ready ~= nil and ready.status == "True") then
  hs.status = "Healthy"
  hs.message = "Running: " .. split(status)
  return hs
end
hs.status = "Progressing"
hs.message = "Waiting for the Ready condition"
return hs
