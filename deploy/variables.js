'use strict';
/**
 * Values that serverless.yml derives instead of restating: `${file(./deploy/variables.js):NAME}`.
 *
 * Each export is a variable resolver of osls (the Serverless Framework v3 line), called only
 * when serverless.yml names it. They exist so that a number is stated once (the visibility
 * timeout is derived from the function timeout, the alarms' thresholds from both), so that a
 * missing or malformed deployment setting fails the package with a message naming the
 * parameter, so that optional pieces (the alert topic's grant, the SNS endpoint) exist only
 * when asked for, and so that secrets can come from a plain --param or from SSM without
 * editing the file. What the function itself knows (its signals, its metrics namespace and
 * service name) is asked of its code, not written again here.
 */
const { spawnSync } = require('child_process');
const path = require('path');

/** The secrets the function reads (contract §7); each may come from SSM instead of a plain --param. */
const SECRETS = [
  'MONGODB_URI',
  'MONGODB_RSKYCLUSTER_DATABASE_USER_PASSWORD',
  'MONGODB_RSKYCLUSTER_DATA_API_KEY',
];
const SSM_SUFFIX = '_SSM_PARAMETER';

async function param(resolveVariable, name) {
  const value = await resolveVariable(`param:${name}, null`);
  return value === null || value === undefined || String(value).trim() === '' ? null : String(value).trim();
}

/** A setting as a whole number (`name` names it in the error): --param values arrive as strings, CloudFormation wants integers. */
function wholeNumber(value, name, maximum = Infinity) {
  const number = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (!Number.isInteger(number) || number < 1 || number > maximum) {
    const range = maximum === Infinity ? 'of at least 1' : `from 1 to ${maximum}`;
    throw new Error(`${name} must be a whole number ${range}, got ${JSON.stringify(value)}`);
  }
  return number;
}

/** The redrive count as an integer from 1 to 1000 (SQS's range); AWS advises at least 5. */
async function maxReceiveCount({ resolveConfigurationProperty }) {
  return wholeNumber(await resolveConfigurationProperty(['custom', 'queue', 'maxReceiveCount']), 'custom.queue.maxReceiveCount', 1000);
}

/** The function timeout (custom.queue.functionTimeoutSeconds, the TIMEOUT param) in seconds. */
async function functionTimeoutSeconds({ resolveConfigurationProperty }) {
  return wholeNumber(
    await resolveConfigurationProperty(['custom', 'queue', 'functionTimeoutSeconds']),
    'custom.queue.functionTimeoutSeconds'
  );
}

/**
 * The request queue's visibility timeout: factor x function timeout, both read from custom.queue,
 * so that AWS's rule (visibility >= 6 x timeout) holds whatever TIMEOUT is deployed.
 */
async function visibilityTimeoutSeconds(helpers) {
  const { resolveConfigurationProperty } = helpers;
  const timeout = await functionTimeoutSeconds(helpers);
  const factor = wholeNumber(
    await resolveConfigurationProperty(['custom', 'queue', 'visibilityTimeoutFactor']),
    'custom.queue.visibilityTimeoutFactor'
  );
  const seconds = timeout * factor;
  if (seconds > 43200) {
    throw new Error(`visibility timeout ${factor} x ${timeout} s exceeds SQS's maximum of 43200 s: lower TIMEOUT`);
  }
  return seconds;
}

/**
 * The function's VPC: SECURITY_GROUP_IDS and SUBNET_IDS (comma-separated) are required together,
 * unless VPC_ENABLED=false says on purpose that the function runs outside any VPC.
 * Returns null (no VPC) only in that explicit case.
 */
async function vpc({ resolveVariable }) {
  const enabled = (await param(resolveVariable, 'VPC_ENABLED')) || 'true';
  if (!['true', 'false'].includes(enabled.toLowerCase())) {
    throw new Error(`--param VPC_ENABLED must be true or false, got ${JSON.stringify(enabled)}`);
  }
  const groups = await param(resolveVariable, 'SECURITY_GROUP_IDS');
  const subnets = await param(resolveVariable, 'SUBNET_IDS');
  if (enabled.toLowerCase() === 'false') {
    if (groups || subnets) {
      throw new Error('VPC_ENABLED=false contradicts the SECURITY_GROUP_IDS / SUBNET_IDS params given: drop one');
    }
    return null;
  }
  const missing = [!groups && 'SECURITY_GROUP_IDS', !subnets && 'SUBNET_IDS'].filter(Boolean);
  if (missing.length) {
    throw new Error(
      `the function runs in a VPC: pass --param="${missing[0]}=..." (comma-separated ids)` +
        `${missing.length > 1 ? ` and --param="${missing[1]}=..."` : ''},` +
        ' or --param="VPC_ENABLED=false" to deploy it outside any VPC'
    );
  }
  const split = (text) => text.split(',').map((id) => id.trim()).filter(Boolean);
  return { securityGroupIds: split(groups), subnetIds: split(subnets) };
}

/**
 * The ENI permissions a function in a VPC needs, as an inline statement (none outside a VPC).
 * They replace the managed AWSLambdaVPCAccessExecutionRole, which also grants logs:* on every
 * log group. EC2 supports no resource-level scoping for these actions, hence Resource "*".
 */
async function vpcNetworkStatements(helpers) {
  if (!(await vpc(helpers))) return [];
  return [
    {
      Effect: 'Allow',
      Action: [
        'ec2:CreateNetworkInterface',
        'ec2:DescribeNetworkInterfaces',
        'ec2:DescribeSubnets',
        'ec2:DeleteNetworkInterface',
        'ec2:AssignPrivateIpAddresses',
        'ec2:UnassignPrivateIpAddresses',
      ],
      Resource: '*',
    },
  ];
}

const SNS_TOPIC_ARN = /^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$/;

/** ALERT_TOPIC_ARN (contract §10) when given and well formed, else '' (alerts off). */
async function alertTopicArn({ resolveVariable }) {
  const topic = await param(resolveVariable, 'ALERT_TOPIC_ARN');
  if (!topic) return '';
  if (!SNS_TOPIC_ARN.test(topic)) {
    throw new Error(`--param ALERT_TOPIC_ARN must be an SNS topic ARN, got ${JSON.stringify(topic)}`);
  }
  return topic;
}

/**
 * The role's own statements: the ENI rights of a function in a VPC (vpcNetworkStatements) and,
 * when alerts are on, sns:Publish (which PublishBatch needs too) on the alert topic only.
 * With alerts off there is no SNS statement at all.
 */
async function roleStatements(helpers) {
  const statements = await vpcNetworkStatements(helpers);
  const topic = await alertTopicArn(helpers);
  if (topic) statements.push({ Effect: 'Allow', Action: ['sns:Publish'], Resource: topic });
  return statements;
}

/**
 * With --param CREATE_SNS_VPC_ENDPOINT=true: an SNS interface endpoint in the function's subnets
 * and security groups (VPC_ID names their VPC), so a function in private subnets without a NAT
 * gateway reaches SNS. Private DNS makes the regional SNS hostname resolve to it; its policy lets
 * through only sns:Publish to the alert topic. Null (no resource) otherwise.
 */
async function snsVpcEndpoint(helpers) {
  const wanted = ((await param(helpers.resolveVariable, 'CREATE_SNS_VPC_ENDPOINT')) || 'false').toLowerCase();
  if (!['true', 'false'].includes(wanted)) {
    throw new Error(`--param CREATE_SNS_VPC_ENDPOINT must be true or false, got ${JSON.stringify(wanted)}`);
  }
  if (wanted === 'false') return null;
  const network = await vpc(helpers);
  const topic = await alertTopicArn(helpers);
  const vpcId = await param(helpers.resolveVariable, 'VPC_ID');
  if (!network) throw new Error('CREATE_SNS_VPC_ENDPOINT=true needs the function in a VPC: drop VPC_ENABLED=false');
  if (!topic) throw new Error('CREATE_SNS_VPC_ENDPOINT=true needs --param ALERT_TOPIC_ARN: with alerts off nothing uses it');
  if (!vpcId || !/^vpc-[0-9a-f]+$/.test(vpcId)) {
    throw new Error(`CREATE_SNS_VPC_ENDPOINT=true needs --param VPC_ID=vpc-... (the subnets' VPC), got ${JSON.stringify(vpcId)}`);
  }
  return {
    Resources: {
      SnsVpcEndpoint: {
        Type: 'AWS::EC2::VPCEndpoint',
        Properties: {
          VpcEndpointType: 'Interface',
          ServiceName: { 'Fn::Sub': 'com.amazonaws.${AWS::Region}.sns' },
          VpcId: vpcId,
          SubnetIds: network.subnetIds,
          SecurityGroupIds: network.securityGroupIds,
          PrivateDnsEnabled: true,
          PolicyDocument: {
            Version: '2012-10-17',
            Statement: [{ Effect: 'Allow', Principal: '*', Action: 'sns:Publish', Resource: topic }],
          },
        },
      },
    },
  };
}

/**
 * The backlog alarm's threshold in seconds: --param BACKLOG_ALARM_SECONDS, else one visibility
 * timeout plus five minutes. A message that failed once comes back after one visibility timeout,
 * so an ordinary retry never alarms, while a queue that is not drained does within minutes.
 */
async function backlogAlarmSeconds(helpers) {
  const given = await param(helpers.resolveVariable, 'BACKLOG_ALARM_SECONDS');
  if (given !== null) return wholeNumber(given, '--param BACKLOG_ALARM_SECONDS', 1209600);
  return (await visibilityTimeoutSeconds(helpers)) + 300;
}

/** The duration alarm's threshold in ms: custom.alarms.durationPercentOfTimeout of the function timeout. */
async function durationAlarmMilliseconds(helpers) {
  const { resolveConfigurationProperty } = helpers;
  const timeout = await functionTimeoutSeconds(helpers);
  const percent = wholeNumber(
    await resolveConfigurationProperty(['custom', 'alarms', 'durationPercentOfTimeout']),
    'custom.alarms.durationPercentOfTimeout',
    99
  );
  return Math.round((timeout * 1000 * percent) / 100);
}

/**
 * The CloudWatch dashboard's body as Fn::Sub of a JSON string: names CloudFormation knows only at
 * deploy time (${AnomalyLambdaFunction}, ${RequestQueue.QueueName}, an alarm's ${X.Arn}, the
 * region) are substituted there. Every metric is one the function emits (namespace, `service`
 * dimension, per-signal `signal` dimension: libs/processor.py, libs/batch.py) or AWS publishes.
 */
async function dashboardBody(helpers) {
  const { resolveVariable, resolveConfigurationProperty } = helpers;
  const facts = functionDefaults();
  const namespace = (await param(resolveVariable, 'POWERTOOLS_METRICS_NAMESPACE')) || facts.namespace;
  const service = (await param(resolveVariable, 'POWERTOOLS_SERVICE_NAME')) || facts.service;
  const timeoutMs = 1000 * (await functionTimeoutSeconds(helpers));
  const concurrency = wholeNumber(await resolveConfigurationProperty(['custom', 'maximumConcurrency']), 'custom.maximumConcurrency');
  const own = (name, ...dimensions) => [namespace, name, 'service', service, ...dimensions];
  // a metric line: namespace, name, dimension pairs, then its rendering options when it has any
  const metric = (namespace, name, dimensions, options) => [namespace, name, ...dimensions, ...(options ? [options] : [])];
  const fn = (name, options) => metric('AWS/Lambda', name, ['FunctionName', '${AnomalyLambdaFunction}'], options);
  const queue = (name, logicalId, options) => metric('AWS/SQS', name, ['QueueName', `\${${logicalId}.QueueName}`], options);
  const line = (label, value) => ({ horizontal: [{ label, value }] });
  const graph = (title, metrics, { stat = 'Sum', annotations, yLabel } = {}) => ({
    type: 'metric',
    properties: {
      title,
      region: '${AWS::Region}',
      view: 'timeSeries',
      stacked: false,
      stat,
      period: 300,
      metrics,
      ...(annotations ? { annotations } : {}),
      ...(yLabel ? { yAxis: { left: { label: yLabel, showUnits: false } } } : {}),
    },
  });
  const alarms = [
    'DeadLetterQueueAlarm',
    'RequestQueueBacklogAlarm',
    'FunctionErrorsAlarm',
    'FunctionThrottlesAlarm',
    'FunctionDurationAlarm',
  ];
  const rows = [
    [
      { type: 'alarm', properties: { title: 'Alarms', alarms: alarms.map((id) => `\${${id}.Arn}`) } },
    ],
    [
      graph('Messages processed and failed', [
        own('MessagesProcessed'),
        own('MessagesFailed'),
        own('InvalidEvents'),
      ]),
      graph('Anomalies flagged, by signal', facts.signals.map((signal) => own('AnomaliesDetected', 'signal', signal))),
      graph('Alerts published and withheld', [own('AlertsPublished'), own('AlertsWithheld')]),
    ],
    [
      graph('Stage time per message (average)', ['Validate', 'Load', 'Model', 'Write'].map((stage) => own(`${stage}Ms`)), {
        stat: 'Average',
        yLabel: 'ms',
      }),
      graph('Model time per message, by signal (average)', facts.signals.map((signal) => own('ModelMs', 'signal', signal)), {
        stat: 'Average',
        yLabel: 'ms',
      }),
      graph('Documents read, skipped and written', [own('DocumentsRead'), own('DocumentsSkipped'), own('DocumentsWritten')]),
    ],
    [
      graph(
        'Request queue: waiting and in flight',
        [
          queue('ApproximateNumberOfMessagesVisible', 'RequestQueue', { label: 'waiting' }),
          queue('ApproximateNumberOfMessagesNotVisible', 'RequestQueue', { label: 'in flight' }),
        ],
        { stat: 'Maximum' }
      ),
      graph('Age of the oldest request', [queue('ApproximateAgeOfOldestMessage', 'RequestQueue')], {
        stat: 'Maximum',
        yLabel: 'seconds',
        annotations: line('backlog alarm', await backlogAlarmSeconds(helpers)),
      }),
      graph('Dead-letter queue depth', [queue('ApproximateNumberOfMessagesVisible', 'DeadLetterQueue', { label: 'dead-lettered' })], {
        stat: 'Maximum',
      }),
    ],
    [
      graph(
        'Function duration',
        [fn('Duration', { stat: 'Average', label: 'average' }), fn('Duration', { stat: 'Maximum', label: 'maximum' })],
        { stat: 'Maximum', yLabel: 'ms', annotations: line('timeout', timeoutMs) }
      ),
      graph('Function errors and throttles', [fn('Errors'), fn('Throttles')]),
      graph('Concurrent executions', [fn('ConcurrentExecutions')], {
        stat: 'Maximum',
        annotations: line('maximumConcurrency', concurrency),
      }),
    ],
  ];
  // rows of equal-width widgets across the 24-column grid: the alarm strip 3 high, graphs 6
  const widgets = [];
  let y = 0;
  for (const row of rows) {
    const width = 24 / row.length;
    const height = row[0].type === 'alarm' ? 3 : 6;
    row.forEach((widget, column) => widgets.push({ ...widget, x: column * width, y, width, height }));
    y += height;
  }
  return { 'Fn::Sub': JSON.stringify({ widgets }) };
}

/**
 * Where the alarms notify: [ALARM_TOPIC_ARN] when that param is given, else [] (an alarm
 * still changes state and shows in the console, it just notifies no one).
 */
async function alarmActions({ resolveVariable }) {
  const topic = await param(resolveVariable, 'ALARM_TOPIC_ARN');
  if (!topic) return [];
  if (!SNS_TOPIC_ARN.test(topic)) {
    throw new Error(`--param ALARM_TOPIC_ARN must be an SNS topic ARN, got ${JSON.stringify(topic)}`);
  }
  return [topic];
}

/**
 * The secret environment variables. For each NAME: the plain --param NAME when given (which may
 * also be a CloudFormation dynamic reference such as {{resolve:secretsmanager:...}}), else the
 * SSM parameter named by --param NAME_SSM_PARAMETER (decrypted at package time: needs AWS
 * credentials), else '' (unset).
 */
async function secrets({ resolveVariable }) {
  const values = {};
  for (const name of SECRETS) {
    const plain = await param(resolveVariable, name);
    const ssmName = await param(resolveVariable, `${name}${SSM_SUFFIX}`);
    if (plain && ssmName) {
      throw new Error(`pass either --param ${name} or --param ${name}${SSM_SUFFIX}, not both`);
    }
    values[name] = plain || (ssmName ? String(await resolveVariable(`ssm:${ssmName}`)) : '');
  }
  return values;
}

/** The runtime's Python version ("3.13" of provider.runtime "python3.13"): the one place it is stated. */
async function pythonVersion({ resolveConfigurationProperty }) {
  const runtime = String(await resolveConfigurationProperty(['provider', 'runtime']));
  const match = /^python(3\.\d+)$/.exec(runtime);
  if (!match) throw new Error(`provider.runtime must be a Python runtime such as python3.13, got ${runtime}`);
  return match[1];
}

/** deploy/find-python's answer for `version` (null when none runs here). */
function findPython(version) {
  const run = spawnSync(path.join(__dirname, 'find-python'), [version], { encoding: 'utf8', timeout: 60000 });
  return run.status === 0 && run.stdout.trim() ? run.stdout.trim() : null;
}

/**
 * The interpreter pip builds the Lambda's requirements with: a CPython of the runtime's version
 * ($LAMBDA_PYTHON_BIN, else on PATH, else under pyenv: deploy/find-python, which the Makefile and
 * the packaged-zip test use too), so that pip picks the wheels the runtime loads.
 */
async function pythonBin(helpers) {
  const version = await pythonVersion(helpers);
  const found = findPython(version);
  if (found) return found;
  // Commands that build no requirements (print, invoke local) need no such interpreter: warn,
  // and let a package fail on the plain name, right under this explanation.
  process.stderr.write(
    `deploy/variables.js: no CPython ${version} found to build the Lambda requirements with:` +
      ` set LAMBDA_PYTHON_BIN, put python${version} on PATH or install it with pyenv\n`
  );
  return `python${version}`;
}

/**
 * What the function's code says of itself (libs/helpers/constants_helper.py): its signals and
 * the defaults of its metrics namespace and service name. Read with any Python 3.11+ and no
 * site-packages (the module imports only the standard library), so the dashboard plots exactly
 * the metrics the code emits.
 */
let functionFacts = null;
function functionDefaults() {
  if (functionFacts) return functionFacts;
  const script =
    'import json; from libs.helpers.constants_helper import SIGNALS, default; ' +
    'print(json.dumps({"signals": list(SIGNALS), "namespace": default("metrics_namespace"), ' +
    '"service": default("service_name")}))';
  const python = 'python3'; // deploy/sls puts the project's .venv first on PATH
  const run = spawnSync(python, ['-S', '-c', script], {
    cwd: path.join(__dirname, '..'),
    encoding: 'utf8',
    timeout: 60000,
  });
  if (run.status !== 0) {
    throw new Error(`could not read the function's signals and metric names with ${python}: ${run.stderr || run.error}`);
  }
  functionFacts = JSON.parse(run.stdout);
  return functionFacts;
}

module.exports = {
  visibilityTimeoutSeconds,
  maxReceiveCount,
  vpc,
  vpcNetworkStatements,
  roleStatements,
  alertTopicArn,
  snsVpcEndpoint,
  alarmActions,
  backlogAlarmSeconds,
  durationAlarmMilliseconds,
  dashboardBody,
  secrets,
  pythonVersion,
  pythonBin,
};
